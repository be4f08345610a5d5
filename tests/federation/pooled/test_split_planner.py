"""The split planner: who gets how many layers, from what the peer table says (no nodes, no model)."""

from __future__ import annotations

import pytest

from federation.pooled.planner import Headroom, Offer, PlanError, plan_split

MB = 1024 * 1024
LAYERS = [4 * MB] * 18  # the embedded Gemma 3 270M: 18 blocks of ~4 MB


def offer(name: str, lend_mb: int, **fields: object) -> Offer:
    return Offer(peer_id=name * 4, name=name, lend_bytes=lend_mb * MB, **fields)  # type: ignore[arg-type]


def test_layers_follow_what_each_lends_and_the_host_keeps_its_share() -> None:
    plan = plan_split(LAYERS, [offer("a", 200), offer("b", 100)], local_bytes=0)
    assert plan.lenders == (("aaaa", 12), ("bbbb", 6))
    assert plan.local_layers == 0
    plan = plan_split(LAYERS, [offer("a", 200), offer("b", 100)])  # the host counts as an average lender
    assert dict(plan.lenders) == {"aaaa": 8, "bbbb": 4} and plan.local_layers == 6
    assert plan.n_layers == 18
    assert plan.share("aaaa") == pytest.approx(8 / 18)


def test_a_lender_never_gets_more_than_its_memory_holds() -> None:
    plan = plan_split(LAYERS, [offer("a", 9)], local_bytes=0)  # 9 MB: two 4 MB layers
    assert plan.lenders == (("aaaa", 2),)
    assert plan.local_layers == 16


def test_split_n_takes_the_least_loaded_then_fastest() -> None:
    offers = [offer("slow", 100, latency_ms=50.0), offer("fast", 100, latency_ms=1.0), offer("loaded", 100, latency_ms=0.5, load=3)]
    plan = plan_split(LAYERS, offers, lenders=1)
    assert [peer for peer, _ in plan.lenders] == ["fastfastfastfast"]


def test_busy_down_small_and_excluded_lenders_are_skipped() -> None:
    offers = [offer("busy", 100, busy=True), offer("down", 100, up=False), offer("tiny", 1), offer("dead", 100), offer("ok", 100)]
    plan = plan_split(LAYERS, offers, excluded={"deaddeaddeaddead"})
    assert [peer for peer, _ in plan.lenders] == ["okokokok"]


def test_replanning_without_a_dead_lender_moves_its_layers() -> None:
    offers = [offer("a", 100), offer("b", 100)]
    before = plan_split(LAYERS, offers)
    after = plan_split(LAYERS, offers, excluded={"aaaa"})
    assert "aaaa" in dict(before.lenders) and "aaaa" not in dict(after.lenders)
    assert after.n_layers == 18


def test_too_few_lenders_is_a_clear_error_naming_each() -> None:
    with pytest.raises(PlanError, match=r"asked for 2 lender\(s\) but 1 can take layers \(busy: busy with another host\)"):
        plan_split(LAYERS, [offer("busy", 100, busy=True), offer("ok", 100)], lenders=2)
    with pytest.raises(PlanError, match="no peer in the table lends"):
        plan_split(LAYERS, [])


GEMMA_HEADROOM = Headroom(per_layer=1 * MB, per_lender=21 * MB, output=682 * MB)  # measured: 170 MiB output weights + 512 MiB logits


def test_working_memory_counts_against_what_a_lender_lends() -> None:
    plan = plan_split(LAYERS, [offer("a", 100)], local_bytes=0, headroom=Headroom(per_layer=1 * MB, per_lender=50 * MB))
    assert plan.lenders == (("aaaa", 10),)  # (100 - 50) // (4 + 1); weights alone would take 18
    with pytest.raises(PlanError, match="less than one layer with its working memory"):
        plan_split(LAYERS, [offer("a", 50)], headroom=Headroom(per_lender=50 * MB))


def test_the_lender_with_most_room_goes_last_and_holds_the_output() -> None:
    plan = plan_split(LAYERS, [offer("big", 1024, latency_ms=9.0), offer("small", 200, latency_ms=1.0)], local_bytes=0, headroom=GEMMA_HEADROOM)
    assert [peer for peer, _ in plan.lenders] == ["smallsmallsmallsmall", "bigbigbigbig"]
    assert plan.n_layers == 18


def test_no_lender_able_to_hold_the_output_names_the_lend_mem_to_use() -> None:
    with pytest.raises(PlanError, match=r"lender a lends 200 MiB, .* holds its output \(682 MiB\): restart one lender with --lend-mem 708MB or more"):
        plan_split(LAYERS, [offer("a", 200), offer("b", 150)], headroom=GEMMA_HEADROOM)
