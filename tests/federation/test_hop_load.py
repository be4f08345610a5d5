"""A hop holds the load the peer behind it holds: a burst of concurrent one-hop calls all succeed.

Real `mcpfed serve` processes: the failure this guards against (the server
closing a keep-alive connection the hop's pool was about to reuse) needs two
busy event loops, which one test process does not give.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.support.processes import serve_process

pytestmark = pytest.mark.anyio

NOTES = Path(__file__).resolve().parents[2] / "examples" / "notes"
BURST = 1000


async def test_a_burst_of_one_hop_calls_all_succeed_like_direct_ones(tmp_path: Path) -> None:
    async with (
        serve_process(tmp_path, "srv", "--model", "none", "--notes", str(NOTES)) as (srv_url, _),
        serve_process(tmp_path, "front", "--model", "none", "--peer", srv_url) as (front_url, _),
    ):
        failures: list[str] = []
        async with Client(front_url, read_timeout_seconds=240) as client:
            with anyio.fail_after(20):
                while "srv__search_notes" not in {t.name for t in (await client.list_tools()).tools}:
                    await anyio.sleep(0.1)

            async def one() -> None:
                try:
                    result = await client.call_tool("srv__search_notes", {"query": "relay"})
                except Exception as exc:  # noqa: BLE001 - every failure is reported below
                    failures.append(repr(exc))
                    return
                if result.is_error:
                    failures.append(str(result.content[0]))

            async with anyio.create_task_group() as group:
                for _ in range(BURST):
                    group.start_soon(one)
        assert not failures, f"{len(failures)} of {BURST} failed; first: {failures[0]}"
