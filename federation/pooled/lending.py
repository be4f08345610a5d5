"""What `mcpfed serve --lend` runs: a ggml RPC server capped at the lent memory, and the tunnel desk in front of it.

The RPC server (`servers.rpc_lender`, a child process: ggml's server has no
stop function) binds a loopback port no one outside this machine reaches;
hosts come in only through `LEND_PATH` (`federation.pooled.tunnel`). The
card's `lend` says how much is lent, on which device, and which host holds it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import cast

from starlette.routing import Route, WebSocketRoute

from federation.card import LendOffer
from federation.const import LEND_PATH
from federation.errors import ConfigError
from federation.pooled.tunnel import LendDesk
from servers import ggml_rpc
from servers.rpc_lender import LenderFailed, RpcLender

__all__ = ["Lending"]


class Lending:
    """The lender of one peer: `async with` starts the RPC server; `routes()` and `offer()` go into the node's app and card."""

    def __init__(self, *, mem_bytes: int, cache_dir: Path, threads: int | None, require_proof: bool) -> None:
        self._mem_bytes = mem_bytes
        self._cache_dir = cache_dir
        self._threads = threads
        self._port: int | None = None
        self.pid: int | None = None
        """The RPC server's process (a child of this peer), while it runs."""
        self.desk = LendDesk(lambda: self._port, require_proof=require_proof)
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Lending:
        if not ggml_rpc.supports_rpc():
            raise ConfigError("--lend needs llama-cpp-python built with -DGGML_RPC=ON (`make` builds it so; see README, Pooled compute).")
        lender = RpcLender(mem_mb=max(1, self._mem_bytes // 2**20), cache_dir=self._cache_dir, threads=self._threads)
        try:
            await self._stack.enter_async_context(lender)
        except LenderFailed as exc:
            raise ConfigError(f"--lend: {exc}") from exc
        self._port, self.pid = lender.port, lender.pid
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._port = None
        await self._stack.aclose()

    def routes(self) -> list[Route]:
        """The desk's WebSocket route (typed as `Route`: the MCP SDK's `custom_starlette_routes` says so, Starlette takes any route)."""
        return [cast(Route, WebSocketRoute(LEND_PATH, self.desk))]

    def offer(self) -> LendOffer:
        """What the card says: the memory lent, on the CPU (the device ggml's server lends), and the host holding it now."""
        return LendOffer(bytes=self._mem_bytes, device="cpu", host=self.desk.host)
