"""The live feed from the watched node: its `/events` stream, kept open for good.

`HttpFeed.run(deliver)` connects, hands every item to `deliver` and never
returns: when the node goes away it delivers `Disconnected` (with the reason
a user can act on) and retries with jittered exponential backoff. On every
(re)connect it opens the stream first and only then reads `/peers` and
`/health`, so no change can slip between the snapshot and the stream; while
connected it re-reads `/peers` now and then as a safety net (load and
latency change without events). Nothing is polled faster than that.

The seam is `Feed`: anything with `run(deliver)`. Tests and snapshot apps
feed fixed items through it without a network.

SSE parsing is httpx2's (the MCP SDK's HTTP client), so this module uses
httpx2 throughout.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx2

from federation import Hello, PeerCard, PeerRow, parse_event
from tui.address import NodeAddress
from tui.wire import Connected, Disconnected, FeedItem, PeersRefreshed, node_event

__all__ = ["AuthRequired", "Backoff", "Feed", "HttpFeed", "ReplayFeed", "describe_http_error", "fetch_card", "refused_message"]

Deliver = Callable[[FeedItem], None]

SSE_READ_TIMEOUT = 45.0
"""Seconds of silence before the stream counts as dead (a node sends a heartbeat every 15 s)."""

CONNECT_TIMEOUT = 5.0
"""Deadline for opening a connection and for each plain request."""

HELLO_TIMEOUT = 5.0
"""Deadline for the `hello` event after the stream opens."""

REFRESH_SECONDS = 15.0
"""How often `/peers` is re-read while connected (load and ping latency change without events)."""



class Feed(Protocol):
    """A source of feed items; `run` delivers them until cancelled."""

    async def run(self, deliver: Deliver) -> None: ...


class ReplayFeed:
    """Delivers fixed items at once, then stays "connected" forever: a mesh without a network (snapshots, benches)."""

    def __init__(self, items: Iterable[FeedItem]) -> None:
        self._items = tuple(items)

    async def run(self, deliver: Deliver) -> None:
        for item in self._items:
            deliver(item)
        await anyio.sleep_forever()


class AuthRequired(Exception):
    """The node answered 401/403: it wants a mesh credential we do not have."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Backoff:
    """Retry delays: `first`, doubling per failed attempt up to `cap`, ±`jitter` spread."""

    first: float = 0.5
    cap: float = 10.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        base: float = min(self.cap, self.first * 2 ** max(0, attempt - 1))
        return round(base * random.uniform(1 - self.jitter, 1 + self.jitter), 2)


def refused_message(url: str, code: int = 401) -> str:
    """What to tell a user whose request the mesh refused for want of its secret."""
    return f"{url} refused us ({code}): this mesh needs its secret; pass it with --token SECRET or MCPFED_MESH_SECRET"


def describe_http_error(exc: BaseException, url: str) -> str:
    """One line a user can act on, for why `url` did not answer."""
    if isinstance(exc, AuthRequired):
        return refused_message(url, exc.code)
    if isinstance(exc, httpx2.HTTPStatusError):
        code = exc.response.status_code
        if code == 404:
            return f"{url} answered 404: is this an mcp-federation peer (or a relay's /p/<peer-id>)?"
        return f"{url} answered HTTP {code}"
    if isinstance(exc, httpx2.ConnectTimeout):
        return f"no answer from {url} within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect to {url} (is `mcpfed serve` running there?)"
    if isinstance(exc, (httpx2.ReadTimeout, TimeoutError)):
        return f"{url} went silent (no heartbeat)"
    if isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError)):
        return f"the connection to {url} dropped"
    if isinstance(exc, httpx2.HTTPError):
        return f"{url}: {exc}"
    return f"{url}: {type(exc).__name__}: {exc}"


class HttpFeed:
    """Follows one node's `/events` over HTTP, reconnecting for as long as it runs."""

    def __init__(
        self,
        address: NodeAddress,
        *,
        headers: dict[str, str] | None = None,
        backoff: Backoff = Backoff(),
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.address = address
        self._headers = dict(headers or {})
        self._backoff = backoff
        self._refresh_seconds = refresh_seconds
        self._attempt = 0

    async def run(self, deliver: Deliver) -> None:
        timeout = httpx2.Timeout(CONNECT_TIMEOUT, read=SSE_READ_TIMEOUT)
        async with httpx2.AsyncClient(headers=self._headers, timeout=timeout) as http:
            while True:
                try:
                    await self._follow(http, deliver)
                    reason = f"{self.address.base} closed the event stream (the node may be stopping)"
                except (httpx2.HTTPError, OSError, TimeoutError, AuthRequired) as exc:
                    reason = describe_http_error(exc, self.address.base)
                except ValueError as exc:  # pydantic: the node sent a shape this TUI cannot read
                    reason = f"{self.address.base} sent data this TUI cannot read ({exc.__class__.__name__}); is it a compatible peer?"
                self._attempt += 1
                delay = self._backoff.delay(self._attempt)
                deliver(Disconnected(reason=reason, retry_in=delay, attempt=self._attempt))
                await anyio.sleep(delay)

    async def _follow(self, http: httpx2.AsyncClient, deliver: Deliver) -> None:
        async with http.sse(self.address.events) as source:
            _raise_for_status(source.response)
            events = aiter(source)
            with anyio.fail_after(HELLO_TIMEOUT):
                first = await anext(events, None)
            hello = parse_event(first.event, first.data) if first is not None else None
            if not isinstance(hello, Hello):
                raise httpx2.RemoteProtocolError("the event stream did not start with a hello event")
            peers, health = await self._peers(http), await self._get_json(http, self.address.health)
            self._attempt = 0
            deliver(Connected(card=hello.card, peers=peers, calls_served=int(health.get("calls_served", 0))))
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._refresh_forever, http, deliver)
                async for sse in events:
                    if (item := node_event(sse.event, sse.data)) is not None:
                        deliver(item)
                tg.cancel_scope.cancel()

    async def _refresh_forever(self, http: httpx2.AsyncClient, deliver: Deliver) -> None:
        while True:
            await anyio.sleep(self._refresh_seconds)
            try:
                deliver(PeersRefreshed(await self._peers(http)))
            except (httpx2.HTTPError, OSError):
                pass  # the stream itself notices a dead node; a failed refresh just waits for the next

    async def _peers(self, http: httpx2.AsyncClient) -> tuple[PeerRow, ...]:
        body = await self._get_json(http, self.address.peers)
        return tuple(PeerRow.model_validate(row) for row in body.get("peers", []))

    async def _get_json(self, http: httpx2.AsyncClient, url: str) -> dict[str, Any]:
        response = await http.get(url, timeout=CONNECT_TIMEOUT)
        _raise_for_status(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise httpx2.DecodingError(f"{url} did not answer JSON") from exc
        if not isinstance(body, dict):
            raise httpx2.DecodingError(f"{url} did not answer a JSON object")
        return body


async def fetch_card(url: str, headers: dict[str, str] | None = None) -> PeerCard:
    """GET a peer's card (unverified; see `federation.card.verify_card`)."""
    async with httpx2.AsyncClient(headers=headers or {}, timeout=CONNECT_TIMEOUT) as http:
        response = await http.get(url)
        _raise_for_status(response)
        return PeerCard.model_validate_json(response.content)


def _raise_for_status(response: httpx2.Response) -> None:
    if response.status_code in (401, 403):
        raise AuthRequired(response.status_code)
    response.raise_for_status()
