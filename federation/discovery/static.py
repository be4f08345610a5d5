"""Static peers (`--peer URL`): for networks where multicast does not get through.

Each URL is fetched, verified (signature, id, our mesh) and admitted as
`via="static"`. An unreachable URL is retried with backoff until it answers;
a reachable one is re-fetched every `STATIC_REFRESH_SECONDS` (a static peer
has no mDNS digest to watch). The health monitor handles its liveness like
any other direct peer. The user chose the address, so unlike mDNS hints the
card need not name it (the peer may sit behind a port forward).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import httpx

from federation.const import DISCOVERY_RETRY_SECONDS, STATIC_REFRESH_SECONDS
from federation.discovery.admission import Rejected, RejectionLog, discovery_client, fetch_card
from federation.urls import mcp_url

if TYPE_CHECKING:
    from federation.node import Node

__all__ = ["static_peers"]


async def _keep(node: Node, http: httpx.AsyncClient, url: str, rejections: RejectionLog) -> None:
    first, cap = DISCOVERY_RETRY_SECONDS
    delay = first
    while True:
        try:
            card = await fetch_card(http, url, mesh=node.settings.mesh)
        except Rejected as rejected:
            rejections.report(url, rejected.reason, f"{rejected} (retrying every {cap:g} s at most)")
            await anyio.sleep(delay)
            delay = min(cap, delay * 2)
            continue
        rejections.forget(url)
        node.peers.admit(card, "static", mcp_url(url))
        delay = first
        await anyio.sleep(STATIC_REFRESH_SECONDS)


@asynccontextmanager
async def static_peers(node: Node) -> AsyncIterator[None]:
    """Node service: keep every `settings.peers` URL admitted while it answers."""
    rejections = RejectionLog(node.name)
    async with discovery_client(node.settings) as http, anyio.create_task_group() as task_group:
        for url in node.settings.peers:
            task_group.start_soon(_keep, node, http, url, rejections)
        yield
        task_group.cancel_scope.cancel()
