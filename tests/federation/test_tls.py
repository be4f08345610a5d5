"""TLS with a certificate made by the test (trustme's CA): a relay and a peer serve HTTPS/WSS on 127.0.0.1; clients verify.

The trusted set is process-wide (`federation.tls`), so the refusal of a client
without `--ca` is shown by the CLI in a child process, as a user meets it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from federation.client import connect, result_text
from federation.const import PEERS_PATH
from federation.discovery.relay import relayed_url
from federation.errors import ConfigError
from federation.node import Node
from federation.receipt import served_by
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from federation.tls import client_context
from tests.support.cli import mcpfed
from tests.support.pki import make_pki
from tests.support.relay import AUTH, MESH, MESH_FIELDS
from tests.support.waiting import wait_until

pytest.importorskip("trustme")

NOTES = Path(__file__).resolve().parents[2] / "examples" / "notes"

pytestmark = pytest.mark.anyio


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA of the test's own and a certificate for 127.0.0.1 and localhost, as PEM files."""
    return make_pki(tmp_path)


async def test_a_peer_attaches_to_a_relay_over_wss_and_clients_with_the_ca_reach_both(
    pki: dict[str, Path], make_settings: Callable[..., PeerSettings], tmp_path: Path
) -> None:
    tls = {"tls_cert": pki["cert"], "tls_key": pki["key"], "ca": pki["ca"]}
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", **tls, **MESH_FIELDS)) as relay:
        assert relay.public_url.startswith("https://127.0.0.1:")
        async with Node(make_settings(relays=[relay.public_url], **tls, **MESH_FIELDS)) as node:
            assert node.mcp_url.startswith("https://127.0.0.1:") and all(e.startswith("https://") for e in node.card().endpoints)
            async with httpx.AsyncClient(headers=AUTH, verify=client_context()) as http:

                async def attached() -> bool:
                    listing = (await http.get(relay.public_url + PEERS_PATH)).json()
                    return any(entry["card"]["id"] == node.peer_id for entry in listing["peers"])

                await wait_until(attached, "the peer attached to the relay over wss://")
            for url in (node.mcp_url, relayed_url(relay.public_url, node.peer_id)):
                async with connect(url, headers=AUTH) as client:
                    assert (await client.list_tools()).tools, url

            done = await mcpfed("tools", "--url", node.mcp_url, "--token", MESH.secret, "--ca", str(pki["ca"]), env=_clean_env(tmp_path))
            refused = await mcpfed("tools", "--url", node.mcp_url, "--token", MESH.secret, env=_clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "its TLS certificate is not trusted here: pass --ca FILE" in line, line


async def test_a_modern_call_forwarded_to_an_https_peer_is_verified_with_the_mesh_ca(
    pki: dict[str, Path], make_settings: Callable[..., PeerSettings]
) -> None:
    """The message-level hop (its own HTTP client) trusts `--ca` like every other client of the peer."""
    tls = {"tls_cert": pki["cert"], "tls_key": pki["key"], "ca": pki["ca"], **MESH_FIELDS}
    async with Node(make_settings(name="srv", notes=NOTES, **tls)) as srv, Node(make_settings(name="front", **tls)) as front:
        await front.add_peer(srv.mcp_url)
        await wait_until(lambda: any(t.name == "srv__search_notes" for t in front.tools.tools), "front learned srv's tools over https")
        async with connect(front.mcp_url, headers=AUTH) as client:
            result = await client.call_tool("srv__search_notes", {"query": "relay"})
    assert not result.is_error, result_text(result)
    assert served_by(result.meta or {}, result, front.peer_id)[0] == srv.peer_id


def _clean_env(tmp_path: Path) -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if not key.startswith("MCPFED_")} | {"MCPFED_HOME": str(tmp_path / "cli")}


def test_a_certificate_without_its_key_is_one_clear_error(pki: dict[str, Path], make_settings: Callable[..., PeerSettings]) -> None:
    with pytest.raises(ConfigError, match="--tls-cert and --tls-key go together"):
        make_settings(tls_cert=pki["cert"])
    with pytest.raises(ConfigError, match=r"tls_key=.* is not allowed: no such file"):
        make_settings(tls_cert=pki["cert"], tls_key=pki["key"].with_name("missing.pem"))
