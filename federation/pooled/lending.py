"""What `mcpfed serve --lend` runs: a ggml RPC server capped at the lent memory, and the tunnel desk in front of it.

The RPC server (`servers.rpc_lender`, a child process: ggml's server has no
stop function) binds a loopback port no one outside this machine reaches; if
it dies, the peer starts it again (its card would otherwise offer a dead port);
hosts come in only through `LEND_PATH` (`federation.pooled.tunnel`). The
card's `lend` says how much is lent, on which device, and which host holds it.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import cast

import anyio
from anyio.abc import TaskStatus
from starlette.routing import Route, WebSocketRoute

from federation.card import LendOffer
from federation.const import LEND_PATH
from federation.errors import ConfigError
from federation.pooled.tunnel import LendDesk
from servers import ggml_rpc
from servers.rpc_lender import LenderFailed, RpcLender

__all__ = ["Lending"]

logger = logging.getLogger(__name__)

_RESTART_PAUSE_S = 1.0
"""Between a dead RPC server and its replacement: a server that dies at once must not spin."""


class Lending:
    """The lender of one peer: `async with` starts the RPC server; `routes()` and `offer()` go into the node's app and card."""

    def __init__(self, *, mem_bytes: int, cache_dir: Path, threads: int | None, require_proof: bool) -> None:
        self._mem_bytes = mem_bytes
        self._cache_dir = cache_dir
        self._threads = threads
        self._port: int | None = None
        self._device = "cpu"
        self.pid: int | None = None
        """The RPC server's process (a child of this peer), while it runs."""
        self.desk = LendDesk(lambda: self._port, require_proof=require_proof)
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Lending:
        if not ggml_rpc.supports_rpc():
            raise ConfigError("--lend needs llama-cpp-python built with -DGGML_RPC=ON (`make` builds it so; see README, Pooled compute).")
        group = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.callback(group.cancel_scope.cancel)
        try:
            await group.start(self._serve)
        except LenderFailed as exc:
            await self._stack.aclose()
            raise ConfigError(f"--lend: {exc}") from exc
        return self

    async def _serve(self, *, task_status: TaskStatus[None]) -> None:
        """Run the RPC server, and start it again whenever it dies (a crash, an OOM kill): the card goes on offering it."""
        started = False
        while True:
            try:
                async with RpcLender(mem_mb=max(1, self._mem_bytes // 2**20), cache_dir=self._cache_dir, threads=self._threads) as lender:
                    self._port, self.pid, self._device = lender.port, lender.pid, lender.device
                    if not started:
                        task_status.started()
                        started = True
                    status = await lender.wait()
            except LenderFailed as exc:
                if not started:
                    raise
                logger.warning("--lend: %s; lending stops", exc)
                return
            finally:
                self._port = None
            logger.warning("the ggml RPC server of --lend ended (status %s); starting it again", status)
            await anyio.sleep(_RESTART_PAUSE_S)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._port = None
        await self._stack.aclose()

    @property
    def endpoint(self) -> str | None:
        """The RPC server's loopback endpoint while it serves; None while it is (re)starting."""
        return None if self._port is None else f"127.0.0.1:{self._port}"

    def routes(self) -> list[Route]:
        """The desk's WebSocket route (typed as `Route`: the MCP SDK's `custom_starlette_routes` says so, Starlette takes any route)."""
        return [cast(Route, WebSocketRoute(LEND_PATH, self.desk))]

    def offer(self) -> LendOffer:
        """What the card says: the memory lent, on which device (the lender's GPU if it has one, else "cpu"), and the host holding it now."""
        return LendOffer(bytes=self._mem_bytes, device=self._device, host=self.desk.host)
