"""`mcpfed relay`: peers behind NAT dial out to it; any MCP client reaches them through it.

```python
async with Relay(RelaySettings(port=0)) as relay:
    print(relay.url)             # http://127.0.0.1:<port>
```

Routes: `/tunnel` (WebSocket; peers attach here), `/p/<peer id>/<path>`
(forwarded over that peer's tunnel, e.g. `/p/<id>/mcp`), `/peers` (the
mesh's signed cards), `/health` (open, for liveness probes), `/mesh/proof`
(open: members prove themselves to each other, `federation.proof`). Every route
answers only requests addressed to the relay (`federation.hostguard`: its
addresses, loopback, its public URL's name, `--allowed-host`). With a
mesh secret every other route needs `Authorization: Bearer <secret>` (stock
clients) or a peer token (`federation.proof`): addressed to this relay for
`/tunnel` and `/peers`, to the peer for `/p/<peer id>/...` (the peer checks
it again). Peers prove the relay is a member before they send it any token.
"""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack
from types import TracebackType

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from federation.const import HEALTH_PATH, PEERS_PATH, PROOF_PATH, RELAY_PRESENCE_SECONDS, RELAYED_PREFIX, TUNNEL_PATH
from federation.errors import ConfigError
from federation.home import state_dir
from federation.hostguard import HostGuard, machine_names
from federation.identity import Identity
from federation.listen import bind_socket, start_uvicorn
from federation.membership import MeshGuard
from federation.proof import MeshKeys, ProofDesk
from federation.relay.directory import Directory
from federation.relay.frames import FrameError, Limits, Publish, Refused, Welcome, encode_control, parse_control
from federation.relay.handshake import Refusal, admit, check_card, receive_frame
from federation.relay.listing import PeersListing
from federation.relay.proxy import forward
from federation.relay.received import ReceivedCard
from federation.relay.settings import RelaySettings
from federation.relay.tunnel import Tunnel
from federation.tls import server_options, trust

__all__ = ["Relay"]

logger = logging.getLogger(__name__)


class Relay:
    """A running relay; `async with` starts it, exit stops everything it started."""

    def __init__(self, settings: RelaySettings | None = None) -> None:
        self.settings = settings or RelaySettings()
        if problem := self.settings.bind_problem():
            raise ConfigError(problem)
        if self.settings.ca:
            trust(self.settings.ca)
        self.home = state_dir(self.settings.home)
        self.port = 0
        self.public_url = ""
        self._tunnels: dict[str, Tunnel] = {}
        self._listing = PeersListing()
        self._directory: Directory | None = None
        self._server: uvicorn.Server | None = None
        self._presence = anyio.CancelScope()
        self._stack = AsyncExitStack()
        self.relay_id = Identity.generate().peer_id
        """Names this relay in membership proofs and peer tokens; new at each start (peers prove it again as they re-attach)."""
        keys = MeshKeys(self.settings.mesh_secret) if self.settings.mesh_secret else None
        proofs = ProofDesk(keys, self.relay_id, lambda: [self.public_url, self.url], self._proven_answer, kind="relay") if keys else None
        self._routes = Starlette(
            routes=[
                WebSocketRoute(TUNNEL_PATH, self._tunnel_endpoint),
                Route(PEERS_PATH, self._get_peers, methods=["GET"]),
                Route(HEALTH_PATH, self._get_health, methods=["GET"]),
                *([Route(PROOF_PATH, proofs.endpoint, methods=["POST"])] if proofs else []),
            ]
        )
        members = MeshGuard(
            self._dispatch,
            secret=self.settings.mesh_secret,
            mesh_name=self.settings.mesh_name,
            open_paths=_open_at_relay,
            audience=lambda scope: _relayed_peer(scope) or self.relay_id,
        )
        self.app = HostGuard(members, names=[*machine_names(self.settings.host), *self.settings.public_name(), *self.settings.allowed_hosts])

    # -- lifecycle -------------------------------------------------------
    async def __aenter__(self) -> Relay:
        sock = bind_socket(self.settings.host, self.settings.port)
        async with AsyncExitStack() as stack:
            stack.callback(sock.close)
            self.port = sock.getsockname()[1]
            self.public_url = self.settings.resolved_public_url(self.port)
            # Opening the database creates its tables: SQLite file I/O, kept off the event loop.
            self._directory = await anyio.to_thread.run_sync(Directory, self.settings.db or f"sqlite:///{self.home / 'relay.db'}", self.public_url)
            stack.callback(self._directory.close)
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._stop)
            self._server = await start_uvicorn(
                group,
                self.app,
                sock,
                limits=self.settings.connection_limits(),
                ws_max_size=2 * self.settings.max_frame_bytes,  # past our own limit, so ours names it first
                ws_per_message_deflate=False,
                **server_options(self.settings.tls_cert, self.settings.tls_key),
            )
            group.start_soon(self._refresh_presence)
            self._stack = stack.pop_all()
        return self

    def _stop(self) -> None:
        for tunnel in list(self._tunnels.values()):
            tunnel.fail("the relay is shutting down")
        self._presence.cancel()
        if self._server is not None:
            self._server.should_exit = True

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"{self.settings.scheme}://{host}:{self.port}"

    @property
    def peer_ids(self) -> list[str]:
        return sorted(self._tunnels)

    def limits(self, peer_max_request_bytes: int | None = None) -> Limits:
        requested = self.settings.max_request_bytes
        return Limits(
            max_request_bytes=min(requested, peer_max_request_bytes or requested),
            max_streams=self.settings.max_streams,
            max_frame_bytes=self.settings.max_frame_bytes,
            window=self.settings.window,
        )

    async def _refresh_presence(self) -> None:
        assert self._directory is not None
        with self._presence:
            while True:
                await anyio.sleep(RELAY_PRESENCE_SECONDS)
                await self._directory.refresh([tunnel.received for tunnel in self._tunnels.values()])

    def _proven_answer(self) -> bytes:
        """What a member that proved itself gets at the end of the proof: this relay's id and URL."""
        return json.dumps({"relay": self.relay_id, "url": self.public_url}).encode()

    # -- HTTP --------------------------------------------------------------
    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(RELAYED_PREFIX):
            peer_id, _, rest = scope["path"][len(RELAYED_PREFIX) :].partition("/")
            await forward(scope, receive, send, peer_id, "/" + rest, self._lookup)
        else:
            await self._routes(scope, receive, send)

    async def _lookup(self, peer_id: str) -> Tunnel | str:
        if tunnel := self._tunnels.get(peer_id):
            return tunnel
        assert self._directory is not None
        for (card, _), relay_url in await self._directory.elsewhere(self.settings.mesh):
            if card.id == peer_id:
                return f"peer {peer_id} is attached to relay {relay_url}, not this one: use {relay_url}{RELAYED_PREFIX}{peer_id}/mcp"
        return (
            f"no peer {peer_id[:64]!r} is attached to this relay: it may be offline or reconnecting, "
            f"or the id is wrong. GET {PEERS_PATH} lists the peers attached here."
        )

    async def _get_peers(self, request: Request) -> Response:
        assert self._directory is not None
        here = [t.received for t in self._tunnels.values()]
        elsewhere = [(held, relay_url) for held, relay_url in await self._directory.elsewhere(self.settings.mesh) if held.card.id not in self._tunnels]
        return self._listing.respond(request, self.public_url, self.settings.mesh, here, elsewhere)

    async def _get_health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "tunnels": len(self._tunnels)})

    # -- tunnels -----------------------------------------------------------
    async def _tunnel_endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            auth, received = await admit(websocket, self.limits(), self.settings.mesh)
        except Refusal as refused:
            logger.warning("refused a tunnel from %s: %s", websocket.client, refused.message)
            await _close(websocket, refused)
            return
        card = received.card
        tunnel = Tunnel(websocket, received, self.limits(auth.max_request_bytes), send_timeout=self.settings.send_timeout)
        if previous := self._tunnels.get(card.id):
            previous.fail(f"peer {card.id} attached again; this older tunnel is closed")
        self._tunnels[card.id] = tunnel
        logger.info("peer %s (%s) attached", card.name, card.id)
        try:
            await tunnel.send(encode_control(Welcome(path=f"{RELAYED_PREFIX}{card.id}/mcp")))
            await self._publish(received)
            refusal = await self._serve_tunnel(tunnel)
        finally:
            tunnel.fail(tunnel.close_reason or f"peer {card.id}'s tunnel closed")
            if self._tunnels.get(card.id) is tunnel:
                del self._tunnels[card.id]
                with anyio.CancelScope(shield=True):
                    await self._leave(card.id)
            logger.info("peer %s (%s) detached: %s", card.name, card.id, tunnel.close_reason)
        await _close(websocket, refusal)

    async def _serve_tunnel(self, tunnel: Tunnel) -> Refusal | None:
        """Read frames until the peer leaves, breaks the protocol, or the tunnel fails; the refusal to send, if any."""
        refusal: Refusal | None = None
        async with anyio.create_task_group() as group:

            async def read() -> None:
                nonlocal refusal
                try:
                    await self._read_frames(tunnel)
                except Refusal as exc:
                    refusal = exc
                    tunnel.fail(exc.message)
                except FrameError as exc:
                    refusal = Refusal.from_frame_error(exc)
                    tunnel.fail(refusal.message)
                group.cancel_scope.cancel()

            group.start_soon(read)
            await tunnel.closed.wait()
            group.cancel_scope.cancel()
        return refusal

    async def _read_frames(self, tunnel: Tunnel) -> None:
        while True:
            frame = await receive_frame(tunnel.websocket, self.settings.max_frame_bytes)
            if frame is None:
                tunnel.fail(f"peer {tunnel.peer_id} disconnected")
                return
            if frame.stream != 0:
                tunnel.dispatch(frame)
                continue
            message = parse_control(frame)
            if not isinstance(message, Publish):
                raise FrameError(f"a peer may not send {message.type!r} after the handshake")
            tunnel.received = check_card(message.card, tunnel.peer_id, self.settings.mesh)
            await self._publish(tunnel.received)

    async def _publish(self, received: ReceivedCard) -> None:
        assert self._directory is not None
        await self._directory.publish(received)

    async def _leave(self, peer_id: str) -> None:
        assert self._directory is not None
        await self._directory.leave(peer_id)


def _open_at_relay(path: str) -> bool:
    """`/health`, the relay's own proof endpoint, and each attached peer's: `--peer <relay>/p/<id>/mcp` proves itself through it."""
    if path in (HEALTH_PATH, PROOF_PATH):
        return True
    peer, _, rest = path[len(RELAYED_PREFIX) :].partition("/") if path.startswith(RELAYED_PREFIX) else ("", "", "")
    return bool(peer) and "/" + rest == PROOF_PATH


def _relayed_peer(scope: Scope) -> str | None:
    """The peer a `/p/<peer id>/...` request is for: peer tokens addressed to it may pass."""
    path: str = scope["path"]
    return path[len(RELAYED_PREFIX) :].partition("/")[0] if path.startswith(RELAYED_PREFIX) else None


async def _close(websocket: WebSocket, refusal: Refusal | None) -> None:
    """Say why (if refused) and close; a peer that stopped reading gets no more than a second."""
    with anyio.move_on_after(1):
        try:
            if refusal is not None:
                await websocket.send_bytes(encode_control(Refused(message=refusal.message)))
            reason = (refusal.message if refusal else "").encode("utf-8")[:120].decode("utf-8", "ignore")  # WebSocket caps reasons at 123 bytes
            await websocket.close(refusal.code if refusal else 1000, reason)
        except (OSError, RuntimeError, WebSocketDisconnect):
            pass  # already closed by the peer
