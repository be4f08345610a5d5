"""Bounded Hypothesis runs and a memory meter for the fuzz tests of the parsers that read what peers send."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""Each property test's budget: enough examples to shake out crashes, few enough that all fuzz tests run in seconds."""

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
"""Any value JSON can carry (what a hostile peer can put in a field)."""


def peak_bytes(call: Callable[[], object], *expected: type[BaseException]) -> int:
    """Peak Python heap growth while `call()` runs (raising one of `expected` is fine); the input is allocated before, so not counted."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        try:
            call()
        except expected:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start
