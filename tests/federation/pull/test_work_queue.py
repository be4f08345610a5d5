"""The pull's shared queue of chunks: work stealing, chunks coming back, and the end of a pull."""

from __future__ import annotations

import pytest

from federation.pull.download import _Work

pytestmark = pytest.mark.anyio


async def test_a_chunk_given_back_goes_to_the_next_holder_first() -> None:
    work = _Work([0, 1, 2])
    assert await work.take("a") == 0
    work.give_back(0, "a")
    assert await work.take("b") == 0
    assert work.remaining == 3


async def test_at_the_end_an_idle_holder_also_asks_for_a_chunk_still_out_and_the_first_copy_counts() -> None:
    work = _Work([7])
    assert await work.take("slow") == 7
    assert await work.take("fast") == 7, "the idle holder waited on the slow one instead of asking too"
    assert work.done(7) is True
    assert work.done(7) is False
    assert await work.take("third") is None and work.remaining == 0


async def test_a_chunk_out_with_two_holders_is_requeued_only_when_both_gave_it_back() -> None:
    work = _Work([3])
    await work.take("a")
    await work.take("b")
    work.give_back(3, "a")
    assert work.remaining == 1 and not work.finished(3)
    work.give_back(3, "b")
    assert await work.take("c") == 3
