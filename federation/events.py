"""What happens on a peer, as typed events, fanned out to subscribers.

The `/events` SSE stream, the TUI and scripts all read the same events. Each
subscriber gets its own bounded buffer; one that falls behind loses its oldest
events (and is told how many) instead of slowing the peer.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field

__all__ = ["Event", "EventBus"]

EventKind = Literal["hello", "peer_up", "peer_down", "peer_suspect", "peer_changed", "call_started", "call_finished", "dropped"]

_BUFFER = 1000


class Event(BaseModel):
    """One thing that happened; `data` is kind-specific and documented in the README."""

    seq: int = 0
    kind: EventKind
    at: float = Field(default_factory=time.time)
    data: dict[str, Any] = Field(default_factory=dict)


class _Subscriber:
    def __init__(self) -> None:
        self.buffer: deque[Event] = deque(maxlen=_BUFFER)
        self.dropped = 0
        self.wakeup = anyio.Event()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()

    def push(self, event: Event) -> None:
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1
        self.buffer.append(event)
        self.wakeup.set()


class Subscription:
    """Async iterator over events published after subscribing."""

    def __init__(self, subscriber: _Subscriber) -> None:
        self._subscriber = subscriber

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        subscriber = self._subscriber
        while not subscriber.buffer:
            if subscriber.closed:
                raise StopAsyncIteration
            subscriber.wakeup = anyio.Event()
            await subscriber.wakeup.wait()
        if subscriber.dropped:
            dropped, subscriber.dropped = subscriber.dropped, 0
            return Event(kind="dropped", data={"count": dropped})
        return subscriber.buffer.popleft()


class EventBus:
    """Publish without waiting; subscribe with `async with bus.subscribe() as events`."""

    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        self._seq = itertools.count(1)
        self._closed = False

    def publish(self, kind: EventKind, **data: Any) -> Event:
        event = Event(seq=next(self._seq), kind=kind, data=data)
        for subscriber in self._subscribers:
            subscriber.push(event)
        return event

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        subscriber = _Subscriber()
        if self._closed:
            subscriber.close()
        self._subscribers.add(subscriber)
        try:
            yield Subscription(subscriber)
        finally:
            self._subscribers.discard(subscriber)

    def close(self) -> None:
        """End every subscription (after its buffered events): the peer is stopping."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
