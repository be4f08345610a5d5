"""`mcpfed tui --observe`: a light peer of the TUI's own (no model) that joins the mesh.

It is a real `Node`: discovery fills its peer table as for any peer, and the
TUI watches it over loopback like any other node. It keeps its identity in
`<state dir>/observer` so it never shares a peer id with a `mcpfed serve` on
the same machine, and it joins the same mesh with the same secret as the
user's settings say. While the TUI owns the terminal, log lines that would
have gone to it (uvicorn's handlers hold the real stderr) go to
`<state dir>/observer/observer.log` instead.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from federation import Node, PeerSettings, state_dir

__all__ = ["mesh_settings", "observer_node", "observer_settings"]


def mesh_settings(token: str | None, mesh: str | None = None) -> PeerSettings:
    """The user's settings (MCPFED_* environment), `token` as the mesh secret and `mesh` as the mesh when given; never a model."""
    overrides: dict[str, Any] = {"model": None} | ({"mesh_secret": token} if token else {}) | ({"mesh": mesh} if mesh else {})
    return PeerSettings(**overrides)  # a bad MCPFED_* value is a ConfigError naming it


def observer_settings(base: PeerSettings) -> PeerSettings:
    """The observer peer: `base`'s mesh and secret, its own identity, any free port, no model."""
    return base.model_copy(
        update={
            "model": None,
            "port": 0,
            "name": f"{socket.gethostname().split('.')[0]}-tui",
            "home": state_dir(base.home) / "observer",
        }
    )


@asynccontextmanager
async def observer_node(settings: PeerSettings) -> AsyncIterator[Node]:
    """A running observer peer, stopped on exit."""
    async with Node(settings) as node:
        with _terminal_logs_to(node.home / "observer.log"):
            yield node


@contextmanager
def _terminal_logs_to(path: Path) -> Iterator[None]:
    """Point every log handler that writes to the terminal at `path` instead, until exit."""
    terminal = {sys.__stderr__, sys.__stdout__, sys.stderr, sys.stdout}
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    handlers = {
        h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler and h.stream in terminal
    }
    with path.open("a", encoding="utf-8") as sink:
        previous = {h: h.setStream(sink) for h in handlers}
        try:
            yield
        finally:
            for handler, stream in previous.items():
                handler.setStream(stream)
