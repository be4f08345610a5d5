"""Listening sockets and the uvicorn server on them, shared by peers and relays.

We bind the socket ourselves, so port 0 works (the chosen port is known before
serving) and a taken port is a clear `PortInUseError` instead of uvicorn
exiting the process.

uvicorn never touches the process's signals here: whoever runs the server
(the CLI, a user's script around `Mesh.connect`) owns SIGINT and SIGTERM and
stops it with `should_exit`. Left alone, uvicorn would take both signals the
moment a server starts and, after its own shutdown, raise them again, which
killed `mcpfed serve` on SIGTERM before it had said goodbye or flushed its
ledger.

Every server runs with `ConnectionLimits` (a header timeout and a cap on
connections per address, see `federation.connections`).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskGroup

from federation.connections import ConnectionLimits, protocol_for
from federation.errors import ConfigError, PortInUseError

__all__ = ["KEEP_ALIVE_SECONDS", "bind_socket", "serve_app", "start_uvicorn"]

KEEP_ALIVE_SECONDS = 75
"""How long an idle keep-alive connection stays open on our servers. Clients
that pool connections to peers must expire idle ones sooner: with uvicorn's
5 s default, a hop's pooled connection was often closed by the server just as
the next request went out on it (connection reset; 30 % of a 1,000-call burst)."""

_BACKLOG = 2048
"""Pending connections the kernel queues (capped by net.core.somaxconn). A peer
behind a hop sees bursts of new connections from the forwarder's pool; with
128, a 1,000-call burst overflowed the queue and connections were reset."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket with TCP_NODELAY (accepted sockets inherit it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(f"port {port} on {host} is already in use; pick another with --port, or --port 0 for any free one.") from exc
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(_BACKLOG)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone (see the module docstring)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start_uvicorn(
    task_group: TaskGroup, app: Any, sock: socket.socket, *, limits: ConnectionLimits | None = None, **config: Any
) -> uvicorn.Server:
    """Serve `app` on `sock` in `task_group` under `limits` (the defaults if None); returns once it accepts connections.

    Stop it with `server.should_exit = True` (the task group then waits for it).
    """
    options: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "on",
        "timeout_graceful_shutdown": 1,
        "access_log": False,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "http": protocol_for(limits or ConnectionLimits()),
    }
    server = _Server(uvicorn.Config(app, **(options | config)))
    task_group.start_soon(server.serve, [sock])
    host, port = sock.getsockname()[:2]
    with anyio.fail_after(10):
        while not server.started:
            if server.should_exit:
                raise ConfigError(f"the HTTP server on {host}:{port} failed to start")
            await anyio.sleep(0.005)
    return server


@asynccontextmanager
async def serve_app(app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> AsyncIterator[str]:
    """Serve any ASGI app until the block ends; yields its base URL (benchmarks and tests use it for bare servers)."""
    sock = bind_socket(host, port)
    try:
        async with anyio.create_task_group() as task_group:
            server = await start_uvicorn(task_group, app, sock, **config)
            yield f"http://{host}:{sock.getsockname()[1]}"
            server.should_exit = True
    finally:
        sock.close()
