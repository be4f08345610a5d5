"""What happens on a peer, as typed events, fanned out to subscribers.

The `/events` SSE stream, the TUI and scripts all read the same events, each
kind one model of `federation.contract`. `publish(kind, **fields)` validates
the fields against that model, so a wrong field fails at the publisher. Each
subscriber gets its own bounded buffer; one that falls behind loses its oldest
events (and is told how many) instead of slowing the peer.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio

from federation.contract import EVENT_MODELS, Dropped, EventKind, EventModel

__all__ = ["Event", "EventBus"]

_BUFFER = 1000


@dataclass(frozen=True)
class Event:
    """One thing that happened: its place in the peer's sequence and its typed `payload`."""

    seq: int
    payload: EventModel

    @property
    def kind(self) -> EventKind:
        return self.payload.kind

    @property
    def at(self) -> float:
        return self.payload.at

    @property
    def data(self) -> dict[str, Any]:
        """The payload as JSON values, for readers that go by field name."""
        return self.payload.model_dump(mode="json")


class _Subscriber:
    def __init__(self, kinds: frozenset[str] | None) -> None:
        self.kinds = kinds
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
    """Async iterator over events published after `EventBus.subscribe()` returned it.

    Registration happens at creation, not on first iteration, so a task started
    later misses nothing that happened in between.
    """

    def __init__(self, bus: EventBus, subscriber: _Subscriber) -> None:
        self._bus = bus
        self._subscriber = subscriber

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._bus._subscribers.discard(self._subscriber)

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
            return Event(seq=0, payload=Dropped(count=dropped))
        return subscriber.buffer.popleft()


class EventBus:
    """Publish without waiting; subscribe with `async with bus.subscribe() as events`."""

    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        self._seq = itertools.count(1)
        self._closed = False

    def publish(self, kind: EventKind, **fields: Any) -> Event:
        """Validate `fields` against the model of `kind` (unknown fields too: TypeError) and fan the event out."""
        model = EVENT_MODELS[kind]
        if unknown := fields.keys() - model.model_fields.keys():
            raise TypeError(f"{kind} has no field(s) {', '.join(sorted(unknown))}")
        event = Event(seq=next(self._seq), payload=model(**fields))
        for subscriber in self._subscribers:
            if subscriber.kinds is None or kind in subscriber.kinds:
                subscriber.push(event)
        return event

    def subscribe(self, *kinds: EventKind) -> Subscription:
        """`async with bus.subscribe() as events: async for event in events: ...`

        Name `kinds` to receive only those (the router follows peers, not calls).
        """
        subscriber = _Subscriber(frozenset(kinds) or None)
        if self._closed:
            subscriber.close()
        self._subscribers.add(subscriber)
        return Subscription(self, subscriber)

    def close(self) -> None:
        """End every subscription (after its buffered events): the peer is stopping."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
