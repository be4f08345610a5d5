"""NAT simulation with network namespaces: a peer reachable only through the relay.

Three namespaces joined by two veth pairs, no forwarding anywhere:

    [peer]  10.77.1.2 ── 10.77.1.1  [relay]  10.77.2.1 ── 10.77.2.2  [client]

The peer can reach only the relay (its own subnet) and listens only on its
namespace's loopback; the client can reach only the relay. The client gets a
streamed generation from the peer through `/p/<id>/mcp` and cannot open a
connection to the peer itself. Skips where `ip netns` is not permitted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.identity import Identity
from federation.membership import create_mesh, invite, join
from tests.support.paths import REPO

pytestmark = [pytest.mark.netns, pytest.mark.model]

_CLIENT = """
import json, socket, sys, time
import anyio, httpx
from federation.client import call_tool, connect
from federation.membership import auth_headers
from federation.settings import PeerSettings

relay, peer_id, peer_ip, peer_port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
headers = auth_headers(PeerSettings())  # the mesh this namespace's home joined

async def main():
    async with httpx.AsyncClient(headers=headers, timeout=2) as http:
        with anyio.fail_after(90):
            while True:
                try:
                    listed = (await http.get(relay + "/peers")).json()["peers"]
                    if any(p["card"]["id"] == peer_id for p in listed):
                        break
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                await anyio.sleep(0.2)
    pieces = []
    async def collect(text):
        pieces.append(text)
    async with connect(f"{relay}/p/{peer_id}/mcp", headers=headers) as client:
        with anyio.fail_after(90):  # the peer attaches before its model has loaded
            while (await call_tool(client, "model_info", {})).structured_content["state"] != "ready":
                await anyio.sleep(0.2)
        result = await call_tool(client, "generate", {"prompt": "Once upon a time", "max_tokens": 16, "seed": 7}, on_text=collect)
    try:
        socket.create_connection((peer_ip, peer_port), timeout=3).close()
        direct = "reachable"
    except OSError as exc:
        direct = f"unreachable: {exc}"
    print(json.dumps({"pieces": pieces, "text": result.structured_content["text"], "direct": direct}))

anyio.run(main)
"""


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[dict[str, str]]:
    """Three namespaces (peer, relay, client) wired as in the module docstring; all deleted afterwards."""
    tag = str(os.getpid())
    names = {"peer": f"mfed{tag}p", "relay": f"mfed{tag}r", "client": f"mfed{tag}c"}
    created: list[str] = []
    try:
        for name in names.values():
            added = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
            if added.returncode != 0:
                pytest.skip(f"network namespaces not permitted here: {added.stderr.strip()}")
            created.append(name)
        for side, subnet in (("peer", "1"), ("client", "2")):
            outer, inner = f"v{tag}{side[0]}", f"v{tag}{side[0]}r"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "netns", names[side])
            _ip("link", "set", inner, "netns", names["relay"])
            _ip("addr", "add", f"10.77.{subnet}.2/24", "dev", outer, netns=names[side])
            _ip("addr", "add", f"10.77.{subnet}.1/24", "dev", inner, netns=names["relay"])
            _ip("link", "set", outer, "up", netns=names[side])
            _ip("link", "set", inner, "up", netns=names["relay"])
        for name in names.values():
            _ip("link", "set", "lo", "up", netns=name)
        subprocess.run(["ip", "netns", "exec", names["relay"], "sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True, timeout=10)
        yield names
    finally:
        for name in created:  # deleting a namespace deletes the veth ends inside it
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def _in(netns: str, home: Path, *command: str) -> list[str]:
    return ["ip", "netns", "exec", netns, "env", f"MCPFED_HOME={home}", sys.executable, *command]


def test_client_reaches_a_natted_peer_only_through_the_relay(namespaces: dict[str, str], tmp_path: Path) -> None:
    homes = {side: tmp_path / side for side in namespaces}
    create_mesh(homes["peer"], "natlab")
    token = invite(homes["peer"])
    join(homes["relay"], token)
    join(homes["client"], token)
    peer_id = Identity.load_or_create(homes["peer"]).peer_id
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "cwd": REPO}
    relay = subprocess.Popen(_in(namespaces["relay"], homes["relay"], "-m", "federation.cli", "relay", "--host", "0.0.0.0", "--plain-http", "--port", "8800"), **quiet)
    peer = subprocess.Popen(
        _in(namespaces["peer"], homes["peer"], "-m", "federation.cli", "serve", "--port", "8801", "--ctx", "2048", "--relay", "http://10.77.1.1:8800"),
        **quiet,
    )
    try:
        client = subprocess.run(
            _in(namespaces["client"], homes["client"], "-c", _CLIENT, "http://10.77.2.1:8800", peer_id, "10.77.1.2", "8801"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert client.returncode == 0, client.stderr[-3000:]
        seen = json.loads(client.stdout.strip().splitlines()[-1])
        assert len(seen["pieces"]) > 1 and "".join(seen["pieces"]) == seen["text"]
        assert seen["direct"].startswith("unreachable"), "the client could reach the peer directly: the NAT simulation leaks"
    finally:
        for process in (peer, relay):
            process.terminate()
        for process in (peer, relay):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
