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

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None, sig: signal.Signals = signal.SIGTERM) -> None:
    """Have `sig` sent to this process when its parent dies; exit at once if it already has.

    `parent`: the parent's pid as the parent knew it (a forked child passes it);
    by default the parent this process has now, which is exact when called
    before the child does slow work such as heavy imports.
    """
    parent = os.getppid() if parent is None else parent
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)
