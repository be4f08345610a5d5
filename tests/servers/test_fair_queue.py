"""The model queue on its own: turns round-robin between callers, bounded in all and per caller, nothing accepted lost.

The turns here hold no model (the queue does not care what a turn does); the
same queue in front of the real model is tested in tests/federation/test_model_queue.py.
"""

from __future__ import annotations

import re

import anyio
import pytest

from servers.fair_queue import FairQueue, QueueFull
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


class Worker:
    """Runs turns that last until released, recording who was served in what order; each call in a scope of its own."""

    def __init__(self, queue: FairQueue) -> None:
        self.queue = queue
        self.served: list[str] = []
        self.refused: dict[str, QueueFull] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}
        self._release = anyio.Event()

    async def call(self, caller: str, label: str) -> None:
        with anyio.CancelScope() as self.scopes[label]:
            try:
                async with self.queue.turn(caller):
                    self.served.append(label)
                    await self._release.wait()
                    self._release = anyio.Event()
            except QueueFull as exc:
                self.refused[label] = exc

    def finish_turn(self) -> None:
        self._release.set()


async def drain(worker: Worker, turns: int) -> None:
    for done in range(1, turns + 1):
        await wait_until(lambda: len(worker.served) == done, f"turn {done} started")  # noqa: B023 - awaited in this iteration
        worker.finish_turn()


async def test_callers_take_turns_so_a_newcomer_waits_for_one_turn_of_the_flooder_at_most() -> None:
    worker = Worker(FairQueue(limit=10, per_caller=10))
    async with anyio.create_task_group() as group:
        for index in range(1, 6):
            group.start_soon(worker.call, "A", f"a{index}")
            await wait_until(lambda: worker.queue.queued == index - 1)  # noqa: B023 - awaited in this iteration
        group.start_soon(worker.call, "B", "b1")
        group.start_soon(worker.call, "C", "c1")
        await wait_until(lambda: worker.queue.queued == 6)
        await drain(worker, 7)
    assert worker.served == ["a1", "a2", "b1", "c1", "a3", "a4", "a5"]
    assert (worker.queue.in_flight, worker.queue.queued) == (0, 0)


async def test_beyond_the_limit_or_the_callers_share_a_call_is_refused_busy_with_a_retry_estimate() -> None:
    worker = Worker(FairQueue(limit=3, per_caller=2))
    async with anyio.create_task_group() as group:
        group.start_soon(worker.call, "A", "a1")  # runs
        for label in ("a2", "a3", "a4"):
            group.start_soon(worker.call, "A", label)
        await wait_until(lambda: "a4" in worker.refused)
        group.start_soon(worker.call, "B", "b1")
        group.start_soon(worker.call, "C", "c1")
        await wait_until(lambda: "c1" in worker.refused)
        await drain(worker, 4)
    assert worker.served == ["a1", "a2", "b1", "a3"], "every accepted call is served"
    share, full = str(worker.refused["a4"]), str(worker.refused["c1"])
    assert re.fullmatch(r"busy: 2 calls are waiting for this model; retry after ~\d+ s \(2 of them are yours, the most one caller may have waiting\)\.", share)
    assert re.fullmatch(r"busy: 3 calls are waiting for this model; retry after ~\d+ s\.", full)


async def test_the_retry_estimate_follows_the_measured_turn_time() -> None:
    queue = FairQueue(limit=0)
    for _ in range(3):
        async with queue.turn("A"):
            await anyio.sleep(0.4)
    assert queue.turn_seconds is not None and queue.turn_seconds >= 0.4
    async with queue.turn("A"):
        with pytest.raises(QueueFull) as refused:
            async with queue.turn("B"):
                pass
    assert refused.value.retry_after >= 1
    assert f"retry after ~{refused.value.retry_after} s" in str(refused.value)


async def test_a_cancelled_waiter_frees_its_place_and_the_others_keep_their_turns() -> None:
    worker = Worker(FairQueue(limit=2, per_caller=2))
    async with anyio.create_task_group() as group:
        for caller in ("A", "B", "C"):
            group.start_soon(worker.call, caller, caller.lower() + "1")
            await wait_until(lambda: worker.queue.in_flight + worker.queue.queued == 1 + "ABC".index(caller))  # noqa: B023 - awaited in this iteration
        worker.scopes["c1"].cancel()
        await wait_until(lambda: worker.queue.queued == 1, "c1 left the queue")
        group.start_soon(worker.call, "D", "d1")  # c1's place is free again
        await wait_until(lambda: worker.queue.queued == 2)
        await drain(worker, 3)
    assert worker.served == ["a1", "b1", "d1"]
    assert worker.refused == {}


def test_a_bad_limit_is_refused_and_the_share_never_exceeds_the_limit() -> None:
    with pytest.raises(ValueError, match="queue limit must be 0 or more"):
        FairQueue(limit=-1)
    assert FairQueue(limit=5).per_caller == 3
    assert FairQueue(limit=4, per_caller=9).per_caller == 4
