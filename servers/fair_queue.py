"""The queue in front of one model worker: bounded, and taking turns between callers.

Why this shape: a llama.cpp context serves one request at a time. Behind a
plain FIFO, a caller that sends fifty requests makes everyone else wait for
all fifty, and with no bound a flood grows the queue (and what each waiting
request holds) without limit. So:

- Each caller (a key the server chooses: a peer id, an MCP session, an
  address) has a sub-queue of its own, and the turn goes round-robin between
  the callers that have calls waiting: one of A's, one of B's, one of A's...
  A newcomer waits for at most one turn per caller ahead of it.
- At most `limit` calls wait in all, and one caller at most `per_caller` of
  them (half the limit, rounded up, unless told), so a flood cannot take every
  place and a newcomer still gets in. A call beyond either is refused at once
  with `QueueFull`, whose message starts with `BUSY_PREFIX` and says when to
  retry: the measured recent time of one turn times the turns ahead.
- Nothing accepted is lost: a waiting call leaves only when its caller
  cancels it, and a turn handed to a call at the moment it was cancelled
  passes on to the next.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

__all__ = ["BUSY_PREFIX", "DEFAULT_QUEUE_LIMIT", "MODEL_LOST_PREFIX", "FairQueue", "QueueFull"]

DEFAULT_QUEUE_LIMIT = 64
"""Calls that may wait for one model, half of them from one caller: room for a `mesh_fan_out` of 32 on one peer."""

BUSY_PREFIX = "busy: "
"""How a refusal's message starts; a router reads it as "try another peer"."""

MODEL_LOST_PREFIX = "model lost: "
"""How a model's failure mid-answer starts (a lender of a split model went away): the peer lives on and
re-plans, so a router reads it as "start the answer again on another peer". Beside BUSY_PREFIX, because
both are what a model server tells routers, and this module is the one light peers import anyway."""

_FIRST_TURN_GUESS_S = 1.0
"""Seconds one turn is assumed to take until a turn has been measured."""

_RECENT_WEIGHT = 0.3
"""Weight of the latest turn in the moving average of turn times."""


class QueueFull(RuntimeError):
    """Too many calls are waiting (in all, or from this caller); retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)
class _Waiter:
    caller: Hashable
    granted: anyio.Event = field(default_factory=anyio.Event)


class FairQueue:
    """One turn at a time (`async with queue.turn(caller):`), waiting callers served round-robin."""

    def __init__(self, limit: int, per_caller: int | None = None) -> None:
        if limit < 0 or (per_caller is not None and per_caller < 1):
            raise ValueError(f"a queue limit must be 0 or more and a per-caller share 1 or more (got {limit}, {per_caller})")
        self.limit = limit
        self.per_caller = min(limit, per_caller if per_caller is not None else math.ceil(limit / 2))
        self.turn_seconds: float | None = None
        """Moving average of how long a completed turn took; None until one has."""
        self._busy = False
        self._waiting: dict[Hashable, deque[_Waiter]] = {}
        self._rotation: deque[Hashable] = deque()  # callers with calls waiting, next to be served first
        self._queued = 0

    @property
    def in_flight(self) -> int:
        return int(self._busy)

    @property
    def queued(self) -> int:
        return self._queued

    @asynccontextmanager
    async def turn(self, caller: Hashable) -> AsyncIterator[None]:
        """Hold the worker for `caller`; QueueFull at once if its call may not wait."""
        await self._acquire(caller)
        started = time.monotonic()
        completed = False
        try:
            yield
            completed = True
        finally:
            if completed:  # a refused or cancelled call says nothing about how long a turn takes
                self._measure(time.monotonic() - started)
            self._release()

    async def _acquire(self, caller: Hashable) -> None:
        if not self._busy and not self._queued:
            self._busy = True
            return
        mine = self._waiting.get(caller)
        if self._queued >= self.limit or (mine is not None and len(mine) >= self.per_caller):
            raise self._refusal(len(mine) if mine else 0)
        if mine is None:
            mine = self._waiting[caller] = deque()
            self._rotation.append(caller)
        waiter = _Waiter(caller)
        mine.append(waiter)
        self._queued += 1
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():  # the turn came as the caller left: hand it on
                self._release()
            else:
                self._leave(waiter)
            raise

    def _release(self) -> None:
        """Pass the turn to the next caller in the rotation (which then goes to the back), or free the worker."""
        if not self._rotation:
            self._busy = False
            return
        caller = self._rotation.popleft()
        mine = self._waiting[caller]
        waiter = mine.popleft()
        self._queued -= 1
        if mine:
            self._rotation.append(caller)
        else:
            del self._waiting[caller]
        waiter.granted.set()

    def _leave(self, waiter: _Waiter) -> None:
        mine = self._waiting[waiter.caller]
        mine.remove(waiter)
        self._queued -= 1
        if not mine:
            del self._waiting[waiter.caller]
            self._rotation.remove(waiter.caller)

    def _measure(self, seconds: float) -> None:
        previous = self.turn_seconds
        self.turn_seconds = seconds if previous is None else (1 - _RECENT_WEIGHT) * previous + _RECENT_WEIGHT * seconds

    def _refusal(self, own: int) -> QueueFull:
        """Busy, with a retry time by which the calls waiting now should be served (each turn as long as recent ones)."""
        per_turn = self.turn_seconds if self.turn_seconds is not None else _FIRST_TURN_GUESS_S
        retry_after = max(1, math.ceil(per_turn * (self._queued + 1)))
        message = f"{BUSY_PREFIX}{self._queued} calls are waiting for this model; retry after ~{retry_after} s"
        if own and own >= self.per_caller:
            message += f" ({own} of them are yours, the most one caller may have waiting)"
        return QueueFull(message + ".", retry_after)
