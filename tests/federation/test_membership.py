"""Mesh membership: init/invite/join, the stored mesh, and the 401 every outsider gets."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest

from federation.client import connect
from federation.errors import ConfigError, PeerError
from federation.membership import auth_headers, create_mesh, invite, join, load_mesh, parse_token
from federation.node import Node
from federation.settings import PeerSettings
from tests.support.cli import mcpfed, mcpfed_sync

pytestmark = pytest.mark.anyio


def test_a_join_token_carries_the_mesh_and_is_stored_privately(tmp_path: Path) -> None:
    mesh = create_mesh(tmp_path / "a", "home", relays=["http://relay.example:8800/"])
    token = invite(tmp_path / "a", ["https://second.example"])
    assert token.startswith("mcpfed1.")
    joined = join(tmp_path / "b", token)
    assert (joined.id, joined.name, joined.secret) == (mesh.id, mesh.name, mesh.secret)
    assert joined.relays == ["http://relay.example:8800", "https://second.example"]
    assert load_mesh(tmp_path / "a") == joined  # invite remembered the new relay here too
    assert stat.S_IMODE((tmp_path / "b" / "mesh.json").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("hello", "should start with 'mcpfed1.'"),
        ("mcpfed1.@@@@", "does not decode"),
        ("mcpfed1.eyJ2IjoyfQ", "unknown version"),  # {"v":2}
        ("mcpfed1.eyJ2IjoxfQ", "id: Field required"),  # {"v":1}
    ],
)
def test_garbled_tokens_are_refused_with_the_reason(token: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_token(token)


def test_joining_a_second_mesh_needs_force(tmp_path: Path) -> None:
    create_mesh(tmp_path / "a", "one")
    create_mesh(tmp_path / "b", "two")
    other = invite(tmp_path / "b")
    with pytest.raises(ConfigError, match=r"already belongs to mesh 'one'.*--force"):
        join(tmp_path / "a", other)
    assert join(tmp_path / "a", other, force=True).name == "two"


async def test_cli_init_invite_join_lets_the_second_machine_talk_to_the_first(tmp_path: Path) -> None:
    first_home, second_home, stranger_home = tmp_path / "first", tmp_path / "second", tmp_path / "stranger"
    assert mcpfed_sync("init", "--mesh", "home", "--home", str(first_home)).returncode == 0
    invited = mcpfed_sync("invite", "--home", str(first_home))
    assert invited.returncode == 0
    token = invited.stdout.strip()
    joined = mcpfed_sync("join", token, "--home", str(second_home))
    assert joined.returncode == 0 and "joined mesh home" in joined.stderr
    garbled = mcpfed_sync("join", token[:-7] + "!!!", "--home", str(tmp_path / "garbled"))
    assert garbled.returncode == 1 and "join token is damaged" in garbled.stderr and "Traceback" not in garbled.stderr

    async with Node(PeerSettings(port=0, model=None, home=first_home)) as first:
        second = PeerSettings(port=0, model=None, home=second_home)
        assert first.card().mesh == second.mesh == load_mesh(first_home).id  # type: ignore[union-attr]
        async with connect(first.mcp_url, headers=auth_headers(second)) as client:
            await client.list_tools()
        stranger = PeerSettings(port=0, model=None, home=stranger_home)
        with pytest.raises(PeerError, match=r"no mesh credential was sent.*mcpfed join"):
            async with connect(first.mcp_url, headers=auth_headers(stranger)):
                pass
        for home, expected in ((second_home, 0), (stranger_home, 1)):  # the CLI sends its machine's credential
            listed = await mcpfed("tools", "--url", first.mcp_url, env={**os.environ, "MCPFED_HOME": str(home)})
            assert listed.returncode == expected, listed.stderr
        assert "no mesh credential was sent" in listed.stderr


async def test_a_mesh_peer_answers_strangers_401_on_every_route_but_health(start_node: Callable[..., AbstractAsyncContextManager[Node]]) -> None:
    secret = {"mesh": "meshid0001", "mesh_name": "home", "mesh_secret": "s3cret-s3cret-s3cret"}
    async with start_node(**secret) as node, httpx.AsyncClient(base_url=node.url) as http:
        for path in ("/mcp", "/peer", "/peer.md", "/peers", "/events", "/metrics"):
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["content-type"] == "application/json"
            assert "mesh 'home'" in refused.json()["error"]["message"]
        wrong = await http.get("/peer", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401 and "not this mesh's" in wrong.json()["error"]["message"]
        odd = await http.get("/peer", headers={"Authorization": "Basic Zm9vOmJhcg=="})
        assert odd.status_code == 401 and "is not 'Bearer <mesh secret>'" in odd.json()["error"]["message"]
        assert (await http.get("/health")).status_code == 200
        card = await http.get("/peer", headers={"Authorization": "Bearer s3cret-s3cret-s3cret"})
        assert card.status_code == 200 and card.json()["mesh"] == "meshid0001"


async def test_a_peer_outside_any_mesh_stays_open_on_loopback(start_node: Callable[..., AbstractAsyncContextManager[Node]]) -> None:
    async with start_node() as node:
        async with connect(node.mcp_url) as client:
            await client.list_tools()


def test_settings_take_the_stored_mesh_unless_told_otherwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = create_mesh(tmp_path, "home", relays=["http://127.0.0.1:8800"])
    stored = PeerSettings(home=tmp_path)
    assert (stored.mesh, stored.mesh_name, stored.mesh_secret, stored.relays) == (mesh.id, "home", mesh.secret, mesh.relays)
    assert PeerSettings(home=tmp_path, relays=["http://127.0.0.1:9900"]).relays == ["http://127.0.0.1:9900"]
    monkeypatch.setenv("MCPFED_MESH_SECRET", "from-the-environment")
    assert PeerSettings(home=tmp_path).mesh_secret == "from-the-environment"


def test_exposing_a_peer_without_a_mesh_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"binding 0.0.0.0 .* needs a mesh secret"):
        Node(PeerSettings(host="0.0.0.0", port=0, model=None, home=tmp_path))
    with pytest.raises(ConfigError, match=r"attaching to relay http://relay.example:8800 .* needs a mesh secret"):
        Node(PeerSettings(port=0, model=None, home=tmp_path, relays=["http://relay.example:8800"]))
    with pytest.raises(ConfigError, match="must look like http://host:port"):
        PeerSettings(home=tmp_path, relays=["relay.example:8800"])
    exposed = mcpfed_sync("relay", "--host", "0.0.0.0", "--port", "0", "--home", str(tmp_path / "relay"))
    assert exposed.returncode == 2 and "needs a mesh secret" in exposed.stderr and "Traceback" not in exposed.stderr
