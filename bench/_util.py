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
    """One line per variant: p50, p99 and p50 as a ratio of the baseline's p50."""
    base = statistics.median(dict(rows)[baseline])
    print(f"\n{title}")
    print(f"{'variant':<44}{'p50 ms':>9}{'p99 ms':>9}{'× ' + baseline:>18}")
    for name, samples in rows:
        p50 = statistics.median(samples)
        print(f"{name:<44}{p50:>9.2f}{percentile(samples, 0.99):>9.2f}{p50 / base:>17.2f}×")
