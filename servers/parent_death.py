"""Helper processes that die with the process that started them.

A peer starts children that hold resources of their own: copies of itself
(`mcpfed serve --copies`), a ggml RPC lender, a split model's worker. A peer
that is SIGKILLed cannot stop them, and an orphaned lender would go on
serving its port, so each child asks Linux to signal it when its parent
goes (PR_SET_PDEATHSIG). Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["child_environment", "die_with_parent"]

_PR_SET_PDEATHSIG = 1
_PARENT_VARIABLE = "MCPFED_PARENT_PID"


def child_environment() -> dict[str, str]:
    """The environment to start a child that calls `die_with_parent` with: it names this process as the parent.

    So a child whose parent dies while the child is still importing notices at once
    (its parent pid has changed by then, and the name says what it was).
    """
    return {**os.environ, _PARENT_VARIABLE: str(os.getpid())}


def die_with_parent(parent: int | None = None, sig: signal.Signals = signal.SIGTERM) -> None:
    """Have `sig` sent to this process when its parent dies; exit at once if it already has.

    `parent`: the parent's pid as the parent knew it (a forked child passes it); by
    default the one `child_environment` named, else the parent this process has now.
    """
    named = os.environ.pop(_PARENT_VARIABLE, None)  # popped: it names this process's parent, not its children's
    if parent is None:
        parent = int(named) if named and named.isdigit() else os.getppid()
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)
