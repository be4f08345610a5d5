"""Shared bench plumbing: time calls, print ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def time_calls(call: Callable[[], Awaitable[Any]], count: int, warmup: int = 20) -> list[float]:
    """Milliseconds of `count` sequential calls after `warmup` untimed ones."""
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_table(title: str, rows: list[tuple[str, list[float]]], baseline: str) -> None:
    """One line per variant: p50 and p99, each also as a ratio of the baseline's."""
    base_p50 = statistics.median(dict(rows)[baseline])
    base_p99 = percentile(dict(rows)[baseline], 0.99)
    print(f"\n{title}")
    print(f"{'variant':<44}{'p50 ms':>9}{'p99 ms':>9}{'p50 ×':>8}{'p99 ×':>8}   (× {baseline})")
    for name, samples in rows:
        p50, p99 = statistics.median(samples), percentile(samples, 0.99)
        print(f"{name:<44}{p50:>9.2f}{p99:>9.2f}{p50 / base_p50:>7.2f}×{p99 / base_p99:>7.2f}×")
