"""Reading a running peer from outside: its peer table (`GET /peers`) and event stream (`GET /events`).

`mcpfed peers --url/--watch`, scripts and tests use these; the TUI can too.
`/events` is Server-Sent Events (`id:`, `event:`, `data:` JSON, blank line);
`apply_peer_event` folds `peer_*` events into a table keyed by peer id, the
same way the peer itself changed its table, so a watcher agrees with
`GET /peers`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx

from federation.const import EVENTS_PATH, PEERS_PATH
from federation.contract import PeerDown, PeerRow, parse_event
from federation.errors import PeerError
from federation.events import Event
from federation.tls import client_context
from federation.urls import base_url

__all__ = ["apply_peer_event", "fetch_peers", "follow_peers", "open_events", "sorted_peers"]

_RESYNC_SECONDS = 2.0
_TIMEOUT = httpx.Timeout(5.0)


def apply_peer_event(table: dict[str, PeerRow], event: Event) -> bool:
    """Fold one event into `table`: a `peer_down` that removed the peer removes it, any other `peer_*` sets its row.

    True when the event was about a peer (the table may have changed).
    """
    payload = event.payload
    if isinstance(payload, PeerDown) and payload.removed:
        table.pop(payload.id, None)
    elif isinstance(payload, PeerRow):
        table[payload.id] = PeerRow.model_validate(payload.model_dump(exclude={"at", "reason"}))
    else:
        return False
    return True


def sorted_peers(table: dict[str, PeerRow]) -> list[PeerRow]:
    return sorted(table.values(), key=lambda p: (p.name, p.id))


def _unreachable(url: str, exc: BaseException) -> PeerError:
    if isinstance(exc, httpx.HTTPStatusError):  # a peer that refuses says why in a JSON-RPC error (401: the mesh credential)
        try:
            return PeerError(f"the peer at {url} refused: {exc.response.json()['error']['message']}")
        except (ValueError, KeyError, TypeError, httpx.HTTPError):
            return PeerError(f"the peer at {url} answered HTTP {exc.response.status_code}; is it an mcpfed peer's URL, like http://127.0.0.1:8801/mcp?")
    return PeerError(f"cannot read {url}: {exc.__class__.__name__} {exc}. Is `mcpfed serve` running there?".replace("  ", " "))


async def fetch_peers(url: str, http: httpx.AsyncClient | None = None, *, headers: dict[str, str] | None = None) -> list[PeerRow]:
    """The peer table of the peer at `url` (base or MCP URL); `headers` carry the mesh credential when `http` is not given."""
    target = base_url(url) + PEERS_PATH
    try:
        async with _client(http, headers) as client:
            response = await client.get(target)
            response.raise_for_status()
            return [PeerRow.model_validate(row) for row in response.json()["peers"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:  # a malformed row: pydantic's ValidationError is a ValueError
        raise _unreachable(target, exc) from exc


@asynccontextmanager
async def _client(http: httpx.AsyncClient | None, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    if http is not None:
        yield http
        return
    async with httpx.AsyncClient(timeout=_TIMEOUT, trust_env=False, headers=headers, verify=client_context()) as own:
        yield own


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    kind, seq, data = "", 0, ""
    async for line in lines:
        if line.startswith(":"):
            continue  # heartbeat
        if line == "":
            if kind and data and (payload := parse_event(kind, data)) is not None:  # unknown kinds: a newer peer
                yield Event(seq=seq, payload=payload)
            kind, seq, data = "", 0, ""
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("id:"):
            seq = int(line[3:].strip())
        elif line.startswith("data:"):
            data += line[5:].strip()


@asynccontextmanager
async def open_events(url: str, http: httpx.AsyncClient | None = None) -> AsyncIterator[AsyncIterator[Event]]:
    """`async with open_events(url) as events: async for event in events` — the peer's SSE stream, parsed."""
    target = base_url(url) + EVENTS_PATH
    try:
        async with _client(http) as client:
            async with client.stream("GET", target, timeout=httpx.Timeout(5.0, read=None)) as response:
                if response.is_error:
                    await response.aread()  # the refusal's reason, for the error
                response.raise_for_status()
                yield _parse_sse(response.aiter_lines())
    except (httpx.HTTPError, ValueError) as exc:
        raise _unreachable(target, exc) from exc


async def follow_peers(url: str, on_change: Callable[[list[PeerRow]], None], *, headers: dict[str, str] | None = None) -> None:
    """Call `on_change(peers)` with the peer table now and after every change, until cancelled.

    Status changes come from `/events` as they happen; latency and load (which
    change without events) are refreshed from `/peers` every couple of seconds.
    Raises `PeerError` when the peer cannot be reached or goes away.
    `headers` carry the mesh credential (a peer in a mesh answers 401 without it).
    """
    table: dict[str, PeerRow] = {}
    failures: list[PeerError] = []
    async with httpx.AsyncClient(timeout=_TIMEOUT, trust_env=False, headers=headers, verify=client_context()) as http:
        async with open_events(url, http) as events, anyio.create_task_group() as task_group:
            table.update({p.id: p for p in await fetch_peers(url, http)})
            on_change(sorted_peers(table))

            async def resync() -> None:
                while True:
                    await anyio.sleep(_RESYNC_SECONDS)
                    try:
                        fresh = await fetch_peers(url, http)
                    except PeerError as exc:
                        failures.append(exc)
                        task_group.cancel_scope.cancel()
                        return
                    table.clear()
                    table.update({p.id: p for p in fresh})
                    on_change(sorted_peers(table))

            task_group.start_soon(resync)
            try:
                async for event in events:
                    if apply_peer_event(table, event):
                        on_change(sorted_peers(table))
            except httpx.HTTPError as exc:
                failures.append(_unreachable(base_url(url) + EVENTS_PATH, exc))
            task_group.cancel_scope.cancel()
    raise failures[0] if failures else PeerError(f"the peer at {base_url(url)} closed its event stream (it stopped).")
