"""A peer started with --notes / --share: what it serves, and how bad flags are refused."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from federation.client import connect
from federation.errors import ConfigError
from federation.node import Node
from federation.settings import PeerSettings
from tests.support.cli import mcpfed_sync
from tests.support.paths import NOTES


@pytest.mark.anyio
async def test_notes_peer_answers_searches_and_refuses_escapes(start_node: Callable[..., AbstractAsyncContextManager[Node]]) -> None:
    async with start_node(notes=NOTES) as node, connect(node.mcp_url) as client:
        assert {"search_notes", "read_note"} <= {tool.name for tool in node.card().tools}
        hits = (await client.call_tool("search_notes", {"query": "mDNS TXT record"})).structured_content["hits"]
        assert hits[0]["path"] == "mdns.md"
        note = await client.call_tool("read_note", {"path": hits[0]["path"]})
        assert note.structured_content["text"] == (NOTES / "mdns.md").read_text()
        escape = await client.call_tool("read_note", {"path": "../../pyproject.toml"})
        assert escape.is_error


@pytest.mark.parametrize(
    ("share", "complaint"),
    [
        (["fs"], "needs the form NAME=COMMAND"),
        (["fs="], "needs the form NAME=COMMAND"),
        (["=npx server"], "must be 1-32 letters"),
        (["my fs=npx server"], "must be 1-32 letters"),
        (['fs=npx "server'], "check its quotes"),
        (["fs=npx a", "fs=npx b"], "fs given more than once"),
    ],
)
def test_malformed_share_is_a_config_error(make_settings: Callable[..., PeerSettings], share: list[str], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        make_settings(share=share)


@pytest.mark.parametrize(
    ("share", "allow", "complaint"),
    [
        ([], ["read_file"], "must name its share as NAME:TOOL,TOOL, since no --share is given"),
        (["fs=npx a", "db=npx b"], ["read_file"], r"must name its share as NAME:TOOL,TOOL, since several are shared \(fs, db\)"),
        (["fs=npx a"], ["db:read_file"], "names 'db', which no --share gives; the shares are: fs"),
        (["fs=npx a"], ["fs:, ,"], "names no tools"),
    ],
)
def test_an_allow_that_names_no_share_or_no_tool_is_a_config_error(
    make_settings: Callable[..., PeerSettings], share: list[str], allow: list[str], complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        make_settings(share=share, allow=allow)


def test_allow_lists_add_up_per_share_and_one_share_needs_no_name(make_settings: Callable[..., PeerSettings]) -> None:
    several = make_settings(share=["fs=npx a", "db=npx b"], allow=["fs:read_file, list_directory", "fs:stat"])
    assert several.allowed_tools() == {"fs": {"read_file", "list_directory", "stat"}}
    assert make_settings(share=["fs=npx a"], allow=["read_file"]).allowed_tools() == {"fs": {"read_file"}}


def test_shares_split_on_the_first_equals_sign(make_settings: Callable[..., PeerSettings]) -> None:
    settings = make_settings(share=["fs = npx -y server --opt=1"])
    assert settings.shares() == [("fs", "npx -y server --opt=1")]


def test_notes_must_be_a_folder(make_settings: Callable[..., PeerSettings], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        make_settings(notes=tmp_path / "missing")
    with pytest.raises(ConfigError, match="is not a folder"):
        make_settings(notes=NOTES / "mdns.md")


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [(["--share", "fs"], "needs the form NAME=COMMAND"), (["--notes", "/no/such/folder"], "is not a folder")],
)
def test_serve_refuses_bad_sharing_flags_in_one_line(tmp_path: Path, flags: list[str], complaint: str) -> None:
    run = mcpfed_sync("serve", "--model", "none", "--port", "0", "--home", str(tmp_path), *flags)
    assert run.returncode == 2, run.stderr  # a bad flag is a usage error
    assert complaint in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
