"""Hostile neighbours for discovery tests: crafted mDNS announcements, and an attacker's HTTP server that logs all it receives."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from federation.card import PeerCard, sign_card
from federation.const import SERVICE_TYPE
from federation.identity import Identity
from federation.listen import serve_app


def signed_card(identity: Identity, *, mesh: str | None, endpoint: str, name: str = "mallory") -> PeerCard:
    return sign_card(PeerCard(id="", name=name, pubkey="", mesh=mesh, endpoints=[endpoint]), identity)


@dataclass
class Announcer:
    """Announces arbitrary instances on loopback, as anyone on a LAN can."""

    zc: AsyncZeroconf
    infos: dict[str, AsyncServiceInfo] = field(default_factory=dict)

    async def announce(self, instance: str, port: int, txt: dict[str, str | bytes]) -> str:
        name = f"{instance}.{SERVICE_TYPE}"
        info = AsyncServiceInfo(SERVICE_TYPE, name, addresses=[socket.inet_aton("127.0.0.1")], port=port, properties=txt, server=f"{instance}.local.")
        if name in self.infos:
            await self.zc.async_update_service(info)
        else:
            await self.zc.async_register_service(info, cooperating_responders=True)
        self.infos[name] = info
        return name


def rejections(caplog: pytest.LogCaptureFixture, observer: str = "guard") -> list[tuple[str, str]]:
    """(instance, reason) of every 'not admitting' line the observer's discovery logged."""
    return [
        (str(r.args[1]), str(r.args[2]))
        for r in caplog.records
        if r.name == "federation.discovery" and isinstance(r.args, tuple) and len(r.args) == 4 and r.args[0] == observer
    ]


@dataclass(frozen=True)
class Received:
    """One request as the attacker's server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return f"{self.method} {self.path}\n" + "\n".join(f"{k}: {v}" for k, v in self.headers.items()) + "\n\n" + self.body.decode("utf-8", "replace")


Answer = Callable[[Received], Awaitable[Response]]


async def refuse_everything(received: Received) -> Response:
    return Response(status_code=404)


@dataclass
class Attacker:
    """A stranger's HTTP server: logs every request (any method, any path), then answers with `answer`."""

    answer: Answer = refuse_everything
    received: list[Received] = field(default_factory=list)
    url: str = ""

    @property
    def port(self) -> int:
        return httpx.URL(self.url).port or 0

    async def _any(self, request: Request) -> Response:
        seen = Received(request.method, request.url.path, dict(request.headers), await request.body())
        self.received.append(seen)
        return await self.answer(seen)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._any, methods=["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"])])

    def assert_got_no_credential(self, secret: str) -> None:
        """Nothing it received carried the secret, a token or any Authorization header, nor a caller's proof."""
        for seen in self.received:
            assert "authorization" not in seen.headers, seen.text()
            assert secret not in seen.text() and "mcpfed-t1." not in seen.text(), seen.text()
            assert b'"confirm"' not in seen.body, seen.text()


@asynccontextmanager
async def attacker(answer: Answer = refuse_everything) -> AsyncIterator[Attacker]:
    """An `Attacker` listening on a loopback port for the block."""
    stranger = Attacker(answer)
    async with serve_app(stranger.app(), lifespan="off", timeout_graceful_shutdown=0) as url:
        stranger.url = url
        yield stranger
