"""One forwarder for every call this peer passes on to another peer, whichever transport carries it.

Whether a call arrives as a modern-era HTTP request (message level, see
`federation.routing.asgi`) or comes from a legacy session, the gateway,
`mesh_call`, `mesh_ask` or `Mesh.call` (SDK session), the same books are kept
here: the loop guard and the caller's deadline before sending, the calls
outstanding per peer (the chooser's load), a liveness miss when the
transport fails, one error text per failure, and once the answer is in the
made call's books (`federation.routing.ledger`: its ledger row, the
caller's `call_finished` event and the check of the callee's signed
receipt).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from types import TracebackType
from typing import Any

import mcp.types as types

from federation.errors import PeerError
from federation.hopstamp import MetaStamp
from federation.identity import Identity
from federation.logrelay import LogRoutes, LogWish
from federation.peers import Peer, PeerTable
from federation.proof import MeshKeys, Tokens
from federation.routing.ledger import CallLedger
from federation.routing.sessions import PeerGone, SessionPool
from federation.routing.transports import Delivery, Failure, MessageTransport, ProgressRelay, Reply, SessionTransport, TransportFailure
from federation.settings import PeerSettings
from federation.toolhost import ToolAnswer
from federation.trace import LoopError, Trace

__all__ = ["CallRefused", "Forwarder"]

logger = logging.getLogger(__name__)


class CallRefused(PeerError):
    """The call may not be forwarded: it would loop, or has made too many hops."""


class Forwarder:
    """Forwards calls to other peers and keeps their books; `async with` runs its session pool and connection pool."""

    def __init__(self, *, peers: PeerTable, ledger: CallLedger, identity: Identity, settings: PeerSettings) -> None:
        self._peers = peers
        self._ledger = ledger
        self._peer_id = identity.peer_id
        self._max_hops = settings.max_hops
        tokens = Tokens(MeshKeys(settings.mesh_secret), self._peer_id) if settings.mesh_secret else None  # never the raw secret
        self.logs = LogRoutes()
        """Where log messages of calls sent over a session go back to (`federation.logrelay`)."""
        self.sessions = SessionPool(tokens, on_log=self.logs.deliver)
        self._session_transport = SessionTransport(self.sessions, self.logs)
        self._message_transport = MessageTransport(tokens)
        self.outstanding: Counter[str] = Counter()
        """Calls this peer has sent to each peer and not yet seen answered."""

    async def __aenter__(self) -> Forwarder:
        await self.sessions.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.sessions.__aexit__(exc_type, exc, tb)
        finally:
            await self._message_transport.aclose()

    def peer(self, name_or_id: str) -> Peer:
        """The peer called `name_or_id` (name, id or id prefix); PeerError if unknown or dead."""
        peer = self._peers.find(name_or_id)
        if peer is None:
            known = ", ".join(sorted(f"{p.name} ({p.id})" for p in self._peers)) or "none"
            raise PeerError(f"unknown peer {name_or_id!r}; known peers: {known}. See mesh_peers.")
        if peer.status == "dead":
            raise PeerError(_unreachable(peer))
        return peer

    async def call(
        self,
        peer: Peer,
        tool: str,
        arguments: dict[str, Any],
        trace: Trace,
        on_progress: ProgressRelay | None,
        answers: types.InputResponseRequestParams | None = None,
        logs: LogWish | None = None,
    ) -> ToolAnswer:
        """Call `tool` on `peer` over its SDK session; CallRefused for a loop, PeerGone if the peer fails to answer.

        The answer may be an `input_required` round; `answers` are what its retry carries. `logs`: where the
        peer's log messages for this call go (`federation.logrelay`).
        """
        result = await self._forward(peer, tool, trace, self._session_transport.delivery(tool, arguments, on_progress, answers, logs))
        assert result is not None, "an SDK call returns a result or raises"
        return result

    async def relay(
        self, peer: Peer, tool: str, trace: Trace, request: dict[str, Any], headers: list[tuple[bytes, bytes]], stamp: MetaStamp, reply: Reply
    ) -> ToolAnswer | None:
        """Pass a well-formed tools/call message on to `peer` as `tool`, its answer streaming to `reply`.

        Returns the peer's result (None if its answer held none); raises as `call` does.
        """
        return await self._forward(peer, tool, trace, self._message_transport.delivery(tool, request, headers, stamp, reply))

    async def _forward(self, peer: Peer, tool: str, trace: Trace, deliver: Delivery) -> ToolAnswer | None:
        """The books every forwarded call keeps, around whichever transport `deliver` uses."""
        try:
            trace.check(self._peer_id, self._max_hops)
        except LoopError as exc:
            raise CallRefused(str(exc)) from exc
        remaining = trace.remaining_s()
        if remaining <= 0:
            raise PeerGone(f"the caller's deadline passed before {tool} could be sent to {peer.name}")
        meta = trace.child_meta(self._peer_id)
        started, clock = time.time(), time.perf_counter()
        self.outstanding[peer.id] += 1
        try:
            result = await deliver(peer, meta, remaining)
        except TransportFailure as exc:
            if exc.kind is Failure.UNREACHABLE:
                self._lost(peer)
            if exc.kind is Failure.UNREACHABLE:
                logger.info("%s (%s) failed during %s: %s", peer.name, peer.id, tool, exc.detail)
            raise PeerGone(_failure_text(exc, peer, tool, remaining)) from exc
        finally:
            self.outstanding[peer.id] -= 1
        if result is not None:
            self._ledger.made(peer, tool, meta, result, started, (time.perf_counter() - clock) * 1000)
        return result

    def _lost(self, peer: Peer) -> None:
        """A call failed in transport: new session next time, and one liveness miss."""
        self.sessions.drop(peer.id)
        self._peers.miss(peer.id)


def _failure_text(failure: TransportFailure, peer: Peer, tool: str, remaining: float) -> str:
    """The caller's error for a delivery that failed: the same text whichever transport carried the call."""
    if failure.kind is Failure.OVERLOADED:
        return f"this peer had no free connection to {peer.name} ({peer.id}) for {tool} within the caller's deadline ({remaining:.1f} s); it is overloaded, retry later"
    if failure.kind is Failure.TIMEOUT:
        return f"peer {peer.name} ({peer.id}) did not answer {tool} within {remaining:.1f} s (the caller's deadline)"
    if failure.kind is Failure.REFUSED:
        return f"peer {peer.name} ({peer.id}) refused {tool}: {failure.detail}"
    return _unreachable(peer)


def _unreachable(peer: Peer) -> str:
    """One text for a peer that cannot be reached, whether a call just failed or it was already known dead.

    The transport's own words (which differ by transport) go to the log.
    """
    return f"peer {peer.name} ({peer.id}) is unreachable (last seen {time.time() - peer.last_seen:.0f} s ago); see mesh_peers."
