"""The one way tests wait for something to become true: poll, with a liveness bound that names what was awaited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

POLL_SECONDS = 0.02


async def wait_until(check: Callable[[], object | Awaitable[object]], what: str = "the condition", timeout: float = 10.0) -> None:
    """Poll `check()` (plain or async) until it is truthy; fail the test naming `what` after `timeout` seconds.

    The timeout is a liveness bound for a loaded machine, not a timing
    assertion. Inside a Textual `run_test` the app shares the event loop, so
    the sleeps between polls let it process its messages too.
    """
    with anyio.move_on_after(timeout):
        while True:
            outcome = check()
            if isinstance(outcome, Awaitable):
                outcome = await outcome
            if outcome:
                return
            await anyio.sleep(POLL_SECONDS)
    pytest.fail(f"not within {timeout:g} s: {what}")
