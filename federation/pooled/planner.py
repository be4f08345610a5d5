"""Which lenders get how many of a model's layers: pure, so it is tested without nodes (like routing/choose.py).

`--split auto` takes every usable lender, `--split N` the best N. Usable: it
lends (its card says so), no other host holds it, it is up, it has room for
at least one layer, and it is not one the caller excludes (a lender that
died: the host re-plans without it). Best: least loaded, then fastest
(measured latency), then most memory lent.

Layers go in proportion to what each participant lends, the host counting
as one participant with `local_bytes` (by default as much as the average
lender), so the host keeps its share and "the rest" stays local. No lender
gets more layers than its lent memory holds (sized by the largest layer,
so uneven layers never overflow it); what it cannot hold stays on the host.
llama.cpp places the last layers on its devices, in the order given.

Lent memory holds more than weights (`Headroom`): llama.cpp's working buffers
live beside the layers, and the lender placed last holds the model's output
weights and its logits buffer too (Gemma 3 270M: 170 + 512 MiB, against
4 MiB a layer). So each lender's room is counted after its buffers, the one
with the most room goes last, and when none can hold the output the plan
fails saying which `--lend-mem` would do, instead of llama.cpp failing the
load as "file may be corrupt".
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = ["Headroom", "Offer", "Placement", "PlanError", "plan_split"]


class PlanError(Exception):
    """No placement fits what was asked; the message says what the mesh offers and what to do."""


@dataclass(frozen=True)
class Offer:
    """One lender as the host sees it in its peer table."""

    peer_id: str
    name: str
    lend_bytes: int
    latency_ms: float | None = None
    load: int = 0
    busy: bool = False
    up: bool = True


@dataclass(frozen=True)
class Headroom:
    """What a lender needs beside its layers' weights; all zero by default (the weights alone)."""

    per_layer: int = 0
    """Working memory per layer held (its share of the KV cache)."""
    per_lender: int = 0
    """Working memory of any lender holding layers (its compute buffer)."""
    output: int = 0
    """What the lender placed last holds on top: the output weights and the logits buffer."""


@dataclass(frozen=True)
class Placement:
    """(lender id, layers) in placement order, and the layers the host keeps."""

    lenders: tuple[tuple[str, int], ...]
    local_layers: int

    @property
    def n_layers(self) -> int:
        return self.local_layers + sum(n for _, n in self.lenders)

    def share(self, peer_id: str) -> float:
        """The fraction of the layers `peer_id` holds (what the ledger credits it with per call)."""
        return sum(n for lender, n in self.lenders if lender == peer_id) / self.n_layers if self.n_layers else 0.0


def _problem(offer: Offer, layer: int, excluded: Collection[str]) -> str | None:
    """Why `offer` cannot take a layer (`layer`: one layer with its working memory), or None."""
    if offer.peer_id in excluded:
        return "did not answer through its tunnel"
    if not offer.up:
        return "not up"
    if offer.busy:
        return "busy with another host"
    if offer.lend_bytes < layer:
        return f"lends {offer.lend_bytes} bytes, less than one layer with its working memory ({layer})"
    return None


def plan_split(
    layer_bytes: Sequence[int],
    offers: Sequence[Offer],
    *,
    lenders: int | None = None,
    local_bytes: int | None = None,
    excluded: Collection[str] = (),
    headroom: Headroom = Headroom(),
) -> Placement:
    """Place `layer_bytes` (one entry per layer) on the best `lenders` (None: all usable) of `offers`; PlanError if none fit."""
    if not layer_bytes:
        raise PlanError("the model has no repeating layers to split")
    unit = max(layer_bytes) + headroom.per_layer
    problems = {offer.peer_id: (offer.name, problem) for offer in offers if (problem := _problem(offer, unit + headroom.per_lender, excluded))}
    usable = sorted(
        (offer for offer in offers if offer.peer_id not in problems),
        key=lambda offer: (offer.load, offer.latency_ms if offer.latency_ms is not None else math.inf, -offer.lend_bytes),
    )
    wanted = len(usable) if lenders is None else lenders
    if not usable or len(usable) < wanted:
        known = "; ".join(f"{name}: {why}" for name, why in problems.values()) or "no peer in the table lends"
        asked = "any lender" if lenders is None else f"{lenders} lender(s)"
        raise PlanError(f"--split asked for {asked} but {len(usable)} can take layers ({known}); start peers with --lend, or lower --split")
    chosen = _output_last(usable[:wanted]) if headroom.output else usable[:wanted]
    weights = [local_bytes if local_bytes is not None else sum(o.lend_bytes for o in chosen) // len(chosen), *(o.lend_bytes for o in chosen)]
    counts = _proportional(len(layer_bytes), weights)
    placed = [(offer, min(count, (offer.lend_bytes - headroom.per_lender) // unit)) for offer, count in zip(chosen, counts[1:], strict=True)]
    placed = [(offer, n) for offer, n in placed if n > 0]
    last, n = placed[-1]
    fits = (last.lend_bytes - headroom.per_lender - headroom.output) // unit
    if fits < 1:
        need = unit + headroom.per_lender + headroom.output
        raise PlanError(
            f"lender {last.name} lends {_mib(last.lend_bytes)}, but the lender holding the model's last layers also holds its output "
            f"({_mib(headroom.output)}): restart one lender with --lend-mem {-(-need // 2**20)}MB or more"
        )
    placed[-1] = (last, min(n, fits))
    return Placement(tuple((offer.peer_id, n) for offer, n in placed), len(layer_bytes) - sum(n for _, n in placed))


def _output_last(chosen: list[Offer]) -> list[Offer]:
    """`chosen` with the lender that lends most moved last: llama.cpp gives the last device the output too."""
    biggest = max(range(len(chosen)), key=lambda i: (chosen[i].lend_bytes, i))
    return [*chosen[:biggest], *chosen[biggest + 1 :], chosen[biggest]]


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def _proportional(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split by `weights`, whole numbers adding up to `total` (largest remainder first)."""
    whole = sum(weights) or 1
    exact = [total * weight / whole for weight in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts
