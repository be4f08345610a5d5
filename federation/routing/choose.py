"""Choosing the peer that answers a chat: pure scoring, no nodes, no I/O.

Among able targets, power of two choices on (load, latency), the local model
winning ties; a failed attempt is followed by the best choice among the
targets not yet tried. The router builds the targets from the peer table and
the local engine (see `federation.routing.router`).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from federation.peers import Peer

__all__ = ["Target", "choose", "fits", "next_target", "ranked"]


@dataclass
class Target:
    """A peer able to serve, as the chooser sees it (`peer` is None for this peer's own model)."""

    id: str
    name: str
    local: bool
    load: int
    latency_ms: float
    peer: Peer | None = None

    def score(self) -> tuple[int, float, int]:
        return (self.load, self.latency_ms, 0 if self.local else 1)


def fits(model: str | None, models: Sequence[str]) -> bool:
    """Serves a model at all, and one whose name contains `model` (any case) if given."""
    return bool(models) and (model is None or any(model.lower() in m.lower() for m in models))


def choose(targets: Sequence[Target], rng: random.Random | None = None) -> Target:
    """Power of two choices: sample two, keep the less loaded (ties go faster, then local)."""
    if len(targets) <= 2:
        return min(targets, key=Target.score)
    return min((rng or random).sample(list(targets), 2), key=Target.score)


def next_target(targets: Sequence[Target], tried: Collection[str], rng: random.Random | None = None) -> Target | None:
    """Failover: the choice among targets whose id is not in `tried`, or None when every one was tried."""
    others = [t for t in targets if t.id not in tried]
    return choose(others, rng) if others else None


def ranked(targets: Sequence[Target]) -> list[Target]:
    """Best first: the order a fan-out spreads over distinct targets."""
    return sorted(targets, key=Target.score)
