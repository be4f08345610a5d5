"""Pooled compute across network namespaces: two lenders and a host on their own "hosts", a stranger on a fourth.

The LAN is `tests.support.netns`'s (a bridge and veth pairs in namespaces of
their own; the root namespace is never touched). Each peer binds its
namespace's address with a mesh secret; the host splits the embedded model
over both lenders (`--split auto`, lenders introduced with `--peer`) and
must give the unsplit model's tokens at temperature 0. The stranger, outside
the mesh but on the same LAN, reaches neither lender's RPC port: not on the
lender's LAN address, not on its own loopback, and not through `/lend/rpc`
with the raw mesh secret (no peer token).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from servers import ggml_rpc
from servers.embedded_models import model_path
from servers.llama_engine import LlamaEngine
from tests.support.discovery import SpawnPeer
from tests.support.models import BASE_MODEL
from tests.support.netns import in_namespace, lan_namespaces

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.netns,
    pytest.mark.timeout(400),
    pytest.mark.skipif(not ggml_rpc.supports_rpc(), reason="llama-cpp-python built without -DGGML_RPC=ON"),
]

_SECRET = "pooled-netns-test-secret"
_AUTH = {"Authorization": f"Bearer {_SECRET}"}
_ON_THE_LAN = {"MCPFED_MESH_SECRET": _SECRET, "MCPFED_PLAIN_HTTP": "true"}
_PROMPT = "The capital of France is"
_TOKENS = 24

_GENERATE = """
import anyio, json
from federation.client import connect

async def main():
    async with connect({url!r}, headers={auth!r}) as client:
        done = await client.call_tool("generate", {{"prompt": {prompt!r}, "max_tokens": {tokens}, "temperature": 0.0}})
        info = await client.call_tool("model_info", {{}})
    print(json.dumps({{"error": done.is_error, "text": (done.structured_content or {{}}).get("text", str(done.content)),
                      "lenders": [entry.get("lender") for entry in info.structured_content["placement"][1:]]}}))

anyio.run(main)
"""

_STRANGER = """
import anyio, json, socket
from federation.pooled.tunnel import LenderTunnel, TunnelRefused

def dial(host):
    try:
        socket.create_connection((host, {port}), timeout=3).close()
    except OSError as exc:
        return type(exc).__name__
    return "connected"

async def main():
    seen = {{"lan": dial({lender_ip!r}), "loopback": dial("127.0.0.1")}}
    async with LenderTunnel({url!r}, lambda: {auth!r}, name="lender1") as tunnel:
        try:
            await tunnel.probe()
            seen["tunnel"] = "open"
        except TunnelRefused as exc:
            seen["tunnel"] = str(exc)
    print(json.dumps(seen))

anyio.run(main)
"""


@pytest.fixture
def lan4() -> Iterator[list[str]]:
    """Lender 1, lender 2, the host, and a stranger: 10.77.0.1-4."""
    with lan_namespaces(4) as hosts:
        yield hosts


def _rpc_port(peer_pid: int) -> int:
    """The loopback port of the ggml RPC server a `--lend` peer runs as its child (from its command line)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if parent == peer_pid and b"servers.rpc_lender" in argv:
            return int(argv[argv.index(b"--port") + 1])
    raise AssertionError(f"the --lend peer {peer_pid} runs no RPC server")


async def _unsplit_tokens() -> str:
    """The unsplit model's greedy answer, loaded as a split model runs (no weight repacking)."""
    async with LlamaEngine(model_path(BASE_MODEL), n_ctx=512, n_threads=1, repack=False) as engine:
        await engine.wait_ready()
        return (await engine.complete(_PROMPT, max_tokens=_TOKENS, temperature=0.0)).text


async def test_a_model_split_over_lenders_in_other_namespaces_gives_the_unsplit_tokens_and_strangers_stay_out(lan4: list[str], spawn_peer: SpawnPeer) -> None:
    expected = await _unsplit_tokens()
    lend = ("--lend", "--lend-mem", "1GB", "--threads", "1", "--mdns", "off")
    lenders = [
        await spawn_peer(f"lender{i}", "--host", f"10.77.0.{i}", *lend, prefix=("ip", "netns", "exec", lan4[i - 1]), env=_ON_THE_LAN) for i in (1, 2)
    ]
    introduced = [arg for lender in lenders for arg in ("--peer", lender.mcp_url)]
    split = ("--host", "10.77.0.3", "--split", "auto", "--ctx", "512", "--threads", "1", "--mdns", "off", *introduced)
    host = await spawn_peer("host", *split, model=BASE_MODEL, prefix=("ip", "netns", "exec", lan4[2]), env=_ON_THE_LAN, start_timeout=150)

    answer = await in_namespace(lan4[2], _GENERATE.format(url=host.mcp_url, auth=_AUTH, prompt=_PROMPT, tokens=_TOKENS))
    assert isinstance(answer, dict) and not answer["error"], answer
    assert answer["text"] == expected
    assert sorted(answer["lenders"]) == ["lender1", "lender2"], answer

    port = await anyio.to_thread.run_sync(_rpc_port, lenders[0].process.pid)
    seen = await in_namespace(lan4[3], _STRANGER.format(port=port, lender_ip="10.77.0.1", url=lenders[0].mcp_url, auth=_AUTH))
    assert isinstance(seen, dict)
    assert seen["lan"] == "ConnectionRefusedError", f"the RPC port answered on the lender's LAN address: {seen}"
    assert seen["loopback"] == "ConnectionRefusedError", seen
    assert "HTTP 401" in seen["tunnel"], f"/lend/rpc let in a caller with no peer token: {seen}"
