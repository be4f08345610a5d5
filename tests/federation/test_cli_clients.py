"""The client commands (`peers`, `tools`, `call`, `ask`) against a peer of a mesh, as a new user meets them.

Every one sends the mesh credential (`--token`, or the mesh this machine
joined), takes a URL as people type it, answers a mistake with one sentence,
and writes whole lines into a pipe.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from federation.cli import app
from federation.membership import create_mesh
from federation.node import Node
from federation.settings import PeerSettings
from tests.support.cli import assert_one_line_error, mcpfed
from tests.support.mesh import introduce
from tests.support.paths import NOTES, REPO
from tests.support.tmux import TMUX, Terminal

pytestmark = pytest.mark.anyio



@dataclass
class GuardedMesh:
    """A peer of a mesh with a secret (notes, no model), a second member it knows, and the state dir holding the mesh."""

    peer: Node
    friend: Node
    secret: str
    home: Path


@pytest.fixture(scope="module")
async def guarded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GuardedMesh]:
    home = tmp_path_factory.mktemp("guarded")
    mesh = create_mesh(home, "home")
    member = {"mesh": mesh.id, "mesh_name": mesh.name, "mesh_secret": mesh.secret, "model": None, "mdns": "off", "port": 0}
    friend_home = tmp_path_factory.mktemp("friend")
    async with (
        Node(PeerSettings(name="guarded", home=home, notes=NOTES, **member)) as peer,
        Node(PeerSettings(name="friend", home=friend_home, **member)) as friend,
    ):
        await introduce(peer, friend)
        yield GuardedMesh(peer, friend, mesh.secret, home)


CLIENT_COMMANDS = {
    "peers": ["peers", "--url", "{url}"],
    "tools": ["tools", "--url", "{url}"],
    "call": ["call", "--url", "{url}", "mesh_peers"],
    "ask": ["ask", "--url", "{url}", "hi"],
}


def client_command(name: str, url: str) -> list[str]:
    return [part.format(url=url) for part in CLIENT_COMMANDS[name]]


async def test_peers_without_the_credential_says_the_peer_refused_and_why(guarded: GuardedMesh, env: dict[str, str]) -> None:
    done = await mcpfed("peers", "--url", guarded.peer.mcp_url, env=env)
    assert_one_line_error(done, 1, "refused: 401 unauthorized")


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
@pytest.mark.parametrize("credential", ["--token", "joined mesh"])
async def test_every_client_command_sends_the_mesh_credential(guarded: GuardedMesh, env: dict[str, str], command: str, credential: str) -> None:
    args = client_command(command, guarded.peer.mcp_url)
    if credential == "--token":
        done = await mcpfed(*args, "--token", guarded.secret, env=env)
    else:
        done = await mcpfed(*args, env=env | {"MCPFED_HOME": str(guarded.home)})
    assert "401" not in done.stderr, done.stderr
    if command == "ask":  # this peer has no model: the refusal is the tool's, so the request got in
        assert_one_line_error(done, 1, "Unknown tool: 'chat'")
    else:
        assert done.returncode == 0, done.stderr
    if command == "peers":
        assert "friend" in done.stdout


def test_every_command_that_takes_a_url_takes_a_token() -> None:
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        flags = {flag for param in command.params for flag in getattr(param, "opts", [])}
        if "--url" in flags:
            assert "--token" in flags, f"mcpfed {name} takes --url but no --token"


async def test_a_url_typed_as_host_and_port_reaches_the_peer(guarded: GuardedMesh, env: dict[str, str]) -> None:
    done = await mcpfed("tools", "--url", f"127.0.0.1:{guarded.peer.port}", "--token", guarded.secret, env=env)
    assert done.returncode == 0, done.stderr
    assert "search_notes" in done.stdout


async def test_a_url_where_nothing_answers_mcp_suggests_the_mcp_path(guarded: GuardedMesh, env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{guarded.peer.port}/v1"
    done = await mcpfed("tools", "--url", url, "--token", guarded.secret, env=env)
    assert_one_line_error(done, 1, f"nothing answers MCP at {url}; did you mean {url}/mcp?")


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        ("read_note", {}, "read_note: missing required argument 'path' (string)."),
        ("search_notes", {"query": "relay", "limit": "lots"}, "search_notes: argument 'limit'='lots' is invalid: input should be a valid integer"),
        ("read_note", {"path": "x" * 5000}, "… (5000 characters): the path is too long to be a note; pass a path from search_notes"),
    ],
    ids=["missing-argument", "wrong-type", "path-too-long"],
)
async def test_a_bad_tool_argument_is_one_sentence_not_library_text(
    guarded: GuardedMesh, env: dict[str, str], tool: str, arguments: dict[str, object], says: str
) -> None:
    done = await mcpfed("call", "--url", guarded.peer.mcp_url, "--token", guarded.secret, tool, json.dumps(arguments), env=env)
    assert_one_line_error(done, 1, says)
    for library_text in ("validation error", "pydantic", "OSError", "Errno"):
        assert library_text not in done.stderr


async def test_output_into_a_pipe_is_neither_wrapped_nor_cut(guarded: GuardedMesh, env: dict[str, str]) -> None:
    unsized = {key: value for key, value in env.items() if key not in ("COLUMNS", "LINES")}  # a pipe has no width
    done = await mcpfed("peers", "--url", guarded.peer.mcp_url, "--token", guarded.secret, env=unsized)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["name", "id", "address", "via", "models", "tools", "status", "in-flight", "latency"]
    assert len(rows) == 1, done.stdout
    assert rows[0].split()[:3] == ["friend", guarded.friend.peer_id, f"127.0.0.1:{guarded.friend.port}"]


async def test_tools_gives_each_tool_its_whole_first_paragraph(guarded: GuardedMesh, env: dict[str, str]) -> None:
    """A description wrapped in its source (mesh_peers') is one line here, not its first source line cut mid-sentence."""
    done = await mcpfed("tools", "--url", guarded.peer.mcp_url, "--token", guarded.secret, env=env)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("mesh_peers "))
    assert line.endswith("digest (changes when its tools or models do)."), line


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
async def test_ctrl_c_on_peers_watch_leaves_one_clean_table(guarded: GuardedMesh, tmp_path: Path) -> None:
    """80 columns: the table fills the width, where an echoed ^C used to wrap and leave a second header."""
    term = Terminal(tmp_path / "tmux.sock")
    watch = [sys.executable, "-m", "federation.cli", "peers", "--watch", "--url", guarded.peer.mcp_url, "--token", guarded.secret]
    script = f"{shlex.join(watch)}; echo watch-ended; sleep 60"
    environment = ["env", "-u", "COLUMNS", "-u", "LINES", f"MCPFED_HOME={tmp_path / 'home'}"]
    await term.tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "20", "-c", str(REPO), shlex.join([*environment, "bash", "--norc", "-c", script]))
    try:
        await term.shows(guarded.friend.peer_id)
        await term.tmux("send-keys", "-t", "tui", "C-c")
        screen = await term.shows("watch-ended")
    finally:
        await term.tmux("kill-server", check=False)
    lines = screen.splitlines()
    headers, rows = [sum(text in line for line in lines) for text in ("address", guarded.friend.peer_id)]
    assert (headers, rows) == (1, 1), screen
    assert "^C" not in screen
