"""Relays die: calls in flight fail clearly, peers come back to a restarted relay, another relay keeps them reachable."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from federation.client import call_tool, connect
from federation.discovery.relay import relayed_url
from federation.errors import PeerError
from federation.node import Node
from federation.settings import PeerSettings
from tests.support.relay import AUTH, MESH_FIELDS, free_port, kill, relay_process, wait_attached

pytestmark = pytest.mark.anyio


@pytest.mark.model
async def test_sigkilled_relay_fails_calls_in_flight_and_gets_its_peer_back_after_restart(
    make_settings: Callable[..., PeerSettings], tmp_path: Path
) -> None:
    port = free_port()
    relay_url = f"http://127.0.0.1:{port}"
    async with relay_process(port, tmp_path / "relay") as relay:
        async with Node(make_settings(model="default", n_ctx=2048, relays=[relay_url], **MESH_FIELDS)) as node:
            await node.wait_ready()
            await wait_attached(relay_url, node.peer_id)
            url = relayed_url(relay_url, node.peer_id)
            first_token = anyio.Event()

            async def killed_on_first_token(text: str) -> None:
                if not first_token.is_set():
                    first_token.set()
                    await kill(relay)

            with pytest.raises(PeerError) as failed, anyio.fail_after(30):  # fails, and does not hang
                async with connect(url, headers=AUTH) as client:
                    await call_tool(client, "generate", {"prompt": "Tell a long story", "max_tokens": 60}, on_text=killed_on_first_token)
            assert first_token.is_set()
            assert "SSE stream ended without a response" in str(failed.value) or "cannot reach" in str(failed.value)

            restarted = time.monotonic()
            async with relay_process(port, tmp_path / "relay"):
                await wait_attached(relay_url, node.peer_id, timeout=10)
                print(f"peer back {time.monotonic() - restarted:.2f} s after restarting the relay process")
                async with connect(url, headers=AUTH) as client:
                    info = await call_tool(client, "model_info", {})
                assert info.structured_content is not None and info.structured_content["state"] == "ready"


async def test_a_peer_stays_reachable_through_the_other_relay_when_one_dies(
    make_settings: Callable[..., PeerSettings], tmp_path: Path
) -> None:
    ports = free_port(), free_port()
    first_url, second_url = (f"http://127.0.0.1:{p}" for p in ports)
    async with relay_process(ports[0], tmp_path / "first") as first, relay_process(ports[1], tmp_path / "second"):
        both = [first_url, second_url]
        async with Node(make_settings(relays=both, **MESH_FIELDS)) as target, Node(make_settings(relays=both, **MESH_FIELDS)) as watcher:
            for relay_url in both:
                await wait_attached(relay_url, target.peer_id)
            await kill(first)
            async with connect(relayed_url(second_url, target.peer_id), headers=AUTH) as client:
                await client.list_tools()
            with anyio.fail_after(15):  # the watcher's table moves the relayed route to the surviving relay
                while (seen := watcher.peers.get(target.peer_id)) is None or seen.url != relayed_url(second_url, target.peer_id):
                    await anyio.sleep(0.1)
            async with connect(seen.url, headers=AUTH) as client:
                await client.list_tools()
