"""The per-peer pool of long-lived SDK sessions (never one session per call).

Listing a peer's tools and every SDK-carried call borrow the same session.
A transport failure drops it; the next borrow opens a new one. In a mesh each
request carries a peer token addressed to that peer (`federation.proof`).
"""

from __future__ import annotations

from types import TracebackType

import anyio
import httpx2
import mcp.types as types
from anyio.abc import TaskGroup
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from federation.errors import PeerError
from federation.logrelay import LogRelay
from federation.peers import Peer
from federation.proof import TokenAuth, Tokens
from federation.tls import client_context

__all__ = ["PeerGone", "SessionPool", "root_cause"]

CONNECT_SECONDS = 5.0


class PeerGone(PeerError):
    """The peer stopped answering during a call (connection lost, killed, timed out)."""


def root_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (anyio wraps a session's failure in one), else `exc`."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class _PeerLink:
    """One long-lived SDK session to a peer, owned by a task of its own.

    anyio requires a `Client` to be exited by the task that entered it, so the
    session lives in `run()`; callers borrow `client` while it is open.
    """

    def __init__(self, url: str, auth: TokenAuth | None, on_log: LogRelay | None) -> None:
        self.url = url
        self._auth = auth
        self._on_log = on_log
        self.client: Client | None = None
        self.failure: str | None = None
        self._ready = anyio.Event()
        self._close = anyio.Event()
        self.closed = False

    async def run(self) -> None:
        try:
            timeout = httpx2.Timeout(CONNECT_SECONDS, read=None)
            async with httpx2.AsyncClient(auth=self._auth, timeout=timeout, verify=client_context()) as http:
                async with Client(
                    streamable_http_client(self.url, http_client=http), elicitation_callback=_elicitation_relayed, logging_callback=self._on_log
                ) as client:
                    self.client = client
                    self._ready.set()
                    await self._close.wait()
        except Exception as exc:  # noqa: BLE001 - a lost session is reported to whoever borrows it
            self.failure = str(root_cause(exc)) or type(root_cause(exc)).__name__
        finally:
            self.client = None
            self.closed = True
            self._ready.set()

    async def borrow(self) -> Client:
        with anyio.move_on_after(CONNECT_SECONDS):
            await self._ready.wait()
        if self.client is None:
            raise PeerGone(f"no session with {self.url}: {self.failure or 'connect timed out'}")
        return self.client

    def close(self) -> None:
        self._close.set()


async def _elicitation_relayed(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
    """Declares elicitation, so a peer's tool may ask this peer's callers (as `input_required` rounds, carried by
    `federation.routing.elicitation`); a mid-call `elicitation/create` on this shared session could not tell whose
    user to ask, so it is refused."""
    return types.ErrorData(code=types.INVALID_REQUEST, message="a mid-call elicitation/create cannot be relayed; ask with an input_required result (2026-07-28)")


class SessionPool:
    """One session per peer, each run by a task of the pool's own task group (`async with SessionPool(tokens)`).

    `on_log` gets every log message the peers send (`federation.logrelay.LogRoutes.deliver`).
    """

    def __init__(self, tokens: Tokens | None, on_log: LogRelay | None = None) -> None:
        self._tokens = tokens
        self._on_log = on_log
        self._links: dict[str, _PeerLink] = {}
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> SessionPool:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(exc_type, exc, tb)

    async def client(self, peer: Peer) -> Client:
        """The open session with `peer` (a new one if there is none, it closed, or the peer moved); PeerGone if none opens."""
        link = self._links.get(peer.id)
        if link is None or link.closed or link.url != peer.url:
            if link is not None:
                link.close()
            link = _PeerLink(peer.url, TokenAuth(self._tokens, peer.id) if self._tokens else None, self._on_log)
            self._links[peer.id] = link
            assert self._task_group is not None, "the pool is not running"
            self._task_group.start_soon(link.run)
        return await link.borrow()

    def peers(self) -> set[str]:
        """Ids of the peers a session is open (or opening) with."""
        return {peer_id for peer_id, link in self._links.items() if not link.closed}

    def drop(self, peer_id: str) -> None:
        """Close the session with a peer; the next borrow opens a new one."""
        link = self._links.pop(peer_id, None)
        if link is not None:
            link.close()
