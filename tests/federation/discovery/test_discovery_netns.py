"""Three "hosts" (network namespaces on one bridge) find each other over real multicast and call a tool.

The test builds its own little LAN (`tests.support.netns`): three peer
namespaces on one bridge, 10.77.0.1-3/24, nothing in the root namespace, so
eth0 and the host's own network are never touched. Each peer binds its
namespace's address (which needs a mesh secret) with `--mdns auto`, so it
announces on that interface only. Where `ip netns` is not permitted the test
skips and says why.
"""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest

from federation.const import SERVICE_TYPE
from tests.support.discovery import SpawnPeer
from tests.support.netns import in_namespace
from tests.support.paths import REPO
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.netns]

_SECRET = "netns-test-secret"
_AUTH = {"Authorization": f"Bearer {_SECRET}"}  # a mesh with a secret: every route but /health wants it
_ON_THE_LAN = {"MCPFED_MESH_SECRET": _SECRET, "MCPFED_PLAIN_HTTP": "true"}
"""What binding the test's LAN takes: a mesh secret, and plain HTTP said knowingly (the namespaces are private)."""
_PEERS = "import httpx, json; print(json.dumps(httpx.get({url!r} + '/peers', headers={auth!r}, timeout=5, trust_env=False).json()['peers']))"

_CALL = """
import anyio, json
from federation.client import connect

async def main():
    async with connect({url!r}, headers={auth!r}) as client:
        result = await client.call_tool("model_info", {{}})
    print(json.dumps(result.structured_content))

anyio.run(main)
"""


async def test_peers_on_three_hosts_discover_each_other_and_call_a_tool_across(lan: list[str], spawn_peer: SpawnPeer) -> None:
    peers = []
    for i, host in enumerate(lan, 1):
        model = "default" if i == 1 else "none"  # the first host serves a model; the others will call it
        peers.append(await spawn_peer(f"host{i}", "--host", f"10.77.0.{i}", "--mdns", "auto", model=model, prefix=("ip", "netns", "exec", host), env=_ON_THE_LAN))
    urls = [peer.mcp_url for peer in peers]
    assert [url.split("/")[2].split(":")[0] for url in urls] == ["10.77.0.1", "10.77.0.2", "10.77.0.3"]

    async def everyone_sees_everyone() -> bool:
        for i, (host, url) in enumerate(zip(lan, urls, strict=True)):
            seen = await in_namespace(host, _PEERS.format(url=url.removesuffix("/mcp"), auth=_AUTH))
            assert isinstance(seen, list)
            if sorted((p["url"], p["via"], p["status"]) for p in seen) != sorted((u, "mdns", "up") for j, u in enumerate(urls) if j != i):
                return False
        return True

    await wait_until(everyone_sees_everyone, "each host's peer lists the other two, via mdns, up", timeout=20.0)

    third_sees = await in_namespace(lan[2], _PEERS.format(url=urls[2].removesuffix("/mcp"), auth=_AUTH))
    assert isinstance(third_sees, list)
    model_peer = next(p for p in third_sees if p["models"])  # found through discovery, not told
    assert model_peer["name"] == "host1"
    info = await in_namespace(lan[2], _CALL.format(url=model_peer["url"], auth=_AUTH))
    assert isinstance(info, dict) and info["n_ctx"] > 0, info


_LAN_LISTENER = """
import socket, sys
from zeroconf import InterfaceChoice, ServiceInfo, Zeroconf

zc = Zeroconf(interfaces=InterfaceChoice.All)
zc.register_service(ServiceInfo({kind!r}, "lan-listener." + {kind!r}, addresses=[socket.inet_aton({address!r})], port=9, properties={{}}))
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
zc.close()
"""

_BROWSE = """
import anyio, json
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

async def main():
    seen, control = set(), anyio.Event()

    def on_change(zeroconf, service_type, name, state_change):
        seen.add(name)
        if name.startswith("lan-listener."):
            control.set()

    zc = AsyncZeroconf(interfaces=[{address!r}])
    browser = AsyncServiceBrowser(zc.zeroconf, {kind!r}, handlers=[on_change])
    with anyio.move_on_after(15):
        await control.wait()
    await anyio.sleep({grace!r})
    await browser.async_cancel()
    await zc.async_close()
    print(json.dumps(sorted(seen)))

anyio.run(main)
"""

_GRACE_SECONDS = 3.0
"""How long B keeps browsing after it heard A's LAN listener: its browser queries again within it.

A negative ("B never hears the loopback peer") needs a window; before the fix
the loopback peer answered B's very first query, together with the listener.
"""


async def test_a_loopback_peer_stays_unheard_on_the_lan_beside_an_all_interfaces_listener(lan: list[str], spawn_peer: SpawnPeer) -> None:
    host_a, host_b = lan[0], lan[1]
    peer = await spawn_peer("hidden", "--mdns", "auto", prefix=("ip", "netns", "exec", host_a))
    assert peer.mcp_url.startswith("http://127.0.0.1:")
    listener_code = _LAN_LISTENER.format(kind=SERVICE_TYPE, address="10.77.0.1")
    listener = await anyio.open_process(["ip", "netns", "exec", host_a, sys.executable, "-c", listener_code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert listener.stdout is not None
        with anyio.fail_after(15):
            assert (await listener.stdout.receive()).startswith(b"ready")
        heard = await in_namespace(host_b, _BROWSE.format(kind=SERVICE_TYPE, address="10.77.0.2", grace=_GRACE_SECONDS))
    finally:
        with anyio.CancelScope(shield=True):
            if listener.stdin is not None:
                await listener.stdin.aclose()
            with anyio.move_on_after(5):
                await listener.wait()
            if listener.returncode is None:
                listener.kill()
                await listener.wait()
    assert isinstance(heard, list)
    assert f"lan-listener.{SERVICE_TYPE}" in heard, f"B heard nothing from A over the LAN at all: {heard}"
    assert not [name for name in heard if name.startswith("hidden-")], f"A's loopback-only peer answered B over the LAN: {heard}"


_ENDPOINTS = "import httpx, json; print(json.dumps(httpx.get({url!r} + '/peer', headers={auth!r}, timeout=5, trust_env=False).json()['endpoints']))"


async def test_a_peer_on_every_interface_advertises_its_real_addresses(lan: list[str], spawn_peer: SpawnPeer) -> None:
    everywhere = await spawn_peer("everywhere", "--host", "0.0.0.0", "--mdns", "auto", prefix=("ip", "netns", "exec", lan[0]), env=_ON_THE_LAN)
    port = everywhere.mcp_url.split(":")[2].split("/")[0]
    assert everywhere.mcp_url == f"http://10.77.0.1:{port}/mcp", "the printed URL is one another host can dial"
    endpoints = await in_namespace(lan[0], _ENDPOINTS.format(url=f"http://127.0.0.1:{port}", auth=_AUTH))
    assert endpoints == [f"http://10.77.0.1:{port}/mcp", f"http://127.0.0.1:{port}/mcp"]
    neighbour = await spawn_peer("neighbour", "--host", "10.77.0.2", "--mdns", "auto", prefix=("ip", "netns", "exec", lan[1]), env=_ON_THE_LAN)

    async def neighbour_admitted_it() -> bool:
        seen = await in_namespace(lan[1], _PEERS.format(url=neighbour.mcp_url.removesuffix("/mcp"), auth=_AUTH))
        assert isinstance(seen, list)
        return [(p["name"], p["url"], p["via"]) for p in seen] == [("everywhere", everywhere.mcp_url, "mdns")]

    await wait_until(neighbour_admitted_it, "the neighbour admits it over mDNS at its LAN address, checked against the signed endpoints", timeout=20.0)
