"""`mcpfed serve --copies N`: N peers on one host, forked from one parent that imported the peer's code once.

Why: most of a light peer's memory is the code it imports (~105 of ~130 MB:
pydantic, the MCP SDK's types, sqlalchemy, uvicorn…), and N separate
processes import it N times; N Python start-ups on a small machine also take
minutes (100 took 84 s on 2 cores). Forked after the imports, with
`gc.freeze()` so the collector never writes to those objects (a write would
copy their pages), the copies share that memory copy-on-write and start in
a fraction of a second each.

Each copy is a whole peer of its own: its process, identity and state
directory (`<home>/copies/<i>`), its port (`--port P` gives P+i; 0 stays
ephemeral) and its name (`<name>-<i>`); each prints its MCP URL as `serve`
does. The parent only waits: SIGTERM or SIGINT is passed to every copy, each
stops cleanly (a second signal stops them at once, as for one peer); a copy
that exits is reported and not restarted; the parent exits when the last
copy has. Copies are in their own process group (a terminal's Ctrl-C reaches
only the parent, which passes it on once), and the kernel sends each SIGTERM
if the parent dies (PR_SET_PDEATHSIG), so no copy outlives it.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from federation.home import state_dir
from federation.tls import client_context
from servers.parent_death import die_with_parent

if TYPE_CHECKING:
    from federation.settings import PeerSettings

__all__ = ["copy_problem", "run_copies"]

_PRELOAD = (
    "federation.node",
    "federation.pull.mesh",
    "federation.pull.progress",
    "anyio._backends._asyncio",
    "sqlite3",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.websockets.auto",
    "websockets.server",
    "rich.logging",
)
"""What a running light peer has imported (measured: a `Node` serving for a few seconds), so the copies share it."""


def copy_problem(settings: PeerSettings) -> str | None:
    """Why these settings cannot be run as copies, or None."""
    if settings.copies > 1 and settings.db:
        return "--copies needs a store per copy, but --db names one for all: leave --db unset (each copy keeps SQLite in its own home)"
    if settings.copies > 1 and settings.port and settings.port + settings.copies - 1 > 65535:
        return f"--copies {settings.copies} from --port {settings.port} runs past port 65535: pass a lower --port, or --port 0 for ephemeral ports"
    return None


def _copy_settings(settings: PeerSettings, index: int) -> PeerSettings:
    """Copy `index`'s settings: its own home, name and port; everything else (mesh, relays, timings) shared."""
    name = settings.name or socket.gethostname().split(".")[0]
    return settings.model_copy(
        update={
            "copies": 1,
            "home": state_dir(settings.home) / "copies" / str(index),
            "name": f"{name}-{index}",
            "port": settings.port + index if settings.port else 0,
        }
    )


def _become_copy(parent: int) -> None:
    """In a fresh child: its own process group, and killed with its parent (even a SIGKILLed one)."""
    os.setpgid(0, 0)
    die_with_parent(parent)


def _run_copy(serve_one: Callable[[PeerSettings], None], settings: PeerSettings) -> int:
    """One copy's whole life; its exit status (the child never returns into the parent's code)."""
    code = 0
    try:
        serve_one(settings)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a copy's crash is printed, as one peer's would be
        traceback.print_exc()
        code = 1
    return code


def run_copies(settings: PeerSettings, serve_one: Callable[[PeerSettings], None], report: Callable[[str], None]) -> int:
    """Fork `settings.copies` peers, each run by `serve_one`; wait for all; the exit status (0: all stopped cleanly)."""
    for module in _PRELOAD:
        importlib.import_module(module)
    client_context()  # the system CAs parsed once (~25 ms), not by every copy
    gc.collect()
    gc.freeze()  # everything imported so far: never scanned, so its pages stay shared
    parent = os.getpid()
    children: dict[int, int] = {}  # pid -> copy index
    for index in range(settings.copies):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _become_copy(parent)
            code = _run_copy(serve_one, _copy_settings(settings, index))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        children[pid] = index

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    report(f"{settings.copies} copies started (pids {min(children)}-{max(children)}); SIGTERM or Ctrl-C stops them all")
    worst = 0
    while children:
        pid, status = os.wait()
        if pid not in children:
            continue
        index = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            report(f"copy {index} (pid {pid}) exited with {code}")
            worst = 1
    return worst
