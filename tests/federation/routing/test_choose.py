"""Choosing the peer that answers: scoring, power of two choices and failover planning, without nodes."""

from __future__ import annotations

import random

from federation.routing.choose import Target, choose, fits, next_target, ranked


def target(id: str, load: int = 0, latency_ms: float = 1.0, *, local: bool = False) -> Target:
    return Target(id, f"peer-{id}", local, load, latency_ms)


def test_less_load_wins_then_less_latency_then_the_local_model() -> None:
    assert choose([target("a", load=2), target("b", load=1)]).id == "b"
    assert choose([target("a", latency_ms=9.0), target("b", latency_ms=3.0)]).id == "b"
    assert choose([target("a", latency_ms=0.0), target("me", latency_ms=0.0, local=True)]).id == "me"


def test_power_of_two_never_picks_the_worst_of_three_or_more() -> None:
    targets = [target("idle", load=0), target("busy", load=5), target("busiest", load=9)]
    rng = random.Random(7)
    picks = {choose(targets, rng).id for _ in range(200)}
    assert "busiest" not in picks, "the worst target loses to whichever it is sampled with"
    assert picks == {"idle", "busy"}, "the second best wins when the best is not sampled"


def test_failover_goes_to_the_best_untried_target_and_ends_when_all_were_tried() -> None:
    targets = [target("a", load=0), target("b", load=3)]
    assert next_target(targets, {"a"}) == targets[1]
    assert next_target(targets, {"a", "b"}) is None


def test_a_fan_out_spreads_best_first() -> None:
    targets = [target("c", load=4), target("a", load=0), target("b", load=1)]
    assert [t.id for t in ranked(targets)] == ["a", "b", "c"]


def test_a_model_filter_is_a_case_insensitive_substring_and_a_peer_without_models_never_fits() -> None:
    assert fits(None, ["SmolLM2-135M-Instruct"])
    assert fits("smollm", ["SmolLM2-135M-Instruct"])
    assert not fits("gemma", ["SmolLM2-135M-Instruct"])
    assert not fits(None, [])
