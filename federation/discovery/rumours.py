"""Liveness news passed along with health pings (SWIM's piggybacking), and what a peer makes of news it hears.

A peer probes only a few others per interval (health.py), so it learns of a
crash mostly from the peers that noticed it. Each health ping carries the
prober's recent news in a request header and the answer carries the
answerer's in its JSON: `dead:<id>`, `suspect:<id>`, `up:<id>`. Only
first-hand news is told: a peer tells what it saw with its own probe, never
what it heard, so a rumour stays a witness statement.

Pings and `/health` are open, so news is unauthenticated: hearing it never
changes the peer table by itself. It makes the hearer probe that peer now
(health.py), and only the hearer's own miss, backed by a witness, marks a
peer dead. A forged "dead" costs one probe of a live peer, which answers.
Incarnation numbers (SWIM's way to order conflicting rumours) are not
needed for that reason: a direct probe settles every conflict.
"""

from __future__ import annotations

import time
from typing import Literal, get_args

__all__ = ["NEWS_HEADER", "News", "Rumours", "Status", "decode_news", "encode_news"]

NEWS_HEADER = "x-mcpfed-news"
Status = Literal["up", "suspect", "dead"]
News = tuple[Status, str]  # (status, peer id)

_STATUSES: tuple[str, ...] = get_args(Status)
_MAX_ITEMS = 8  # per ping, told or heard: bounds the bytes and the confirmation probes one ping can cause
_MAX_ID = 64


class Rumours:
    """What this peer saw lately, each item told for `ttl` seconds, the newest first."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._told: dict[str, tuple[Status, float]] = {}  # peer id -> (status, told until)

    def tell(self, peer_id: str, status: Status) -> None:
        self._told.pop(peer_id, None)  # re-inserted last: newest
        self._told[peer_id] = (status, time.monotonic() + self._ttl)

    def news(self) -> list[News]:
        now = time.monotonic()
        for peer_id in [p for p, (_, until) in self._told.items() if until <= now]:
            del self._told[peer_id]
        return [(status, peer_id) for peer_id, (status, _) in reversed(self._told.items())][:_MAX_ITEMS]


def encode_news(news: list[News]) -> list[str]:
    """As a health reply carries them; a request header joins them with spaces."""
    return [f"{status}:{peer_id}" for status, peer_id in news]


def decode_news(raw: object) -> list[News]:
    """News from a header (space-separated) or a health reply (a list); anything malformed is skipped."""
    items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    news: list[News] = []
    for item in items[:_MAX_ITEMS]:
        if not isinstance(item, str):
            continue
        status, _, peer_id = item.partition(":")
        if status in _STATUSES and 0 < len(peer_id) <= _MAX_ID and peer_id.isalnum():
            news.append((status, peer_id))  # type: ignore[arg-type]  # checked against _STATUSES
    return news
