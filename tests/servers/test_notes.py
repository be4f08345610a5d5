"""The notes server: ranked search and guarded reads over a folder of Markdown files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from servers.notes import build_server

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "examples" / "notes"


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """A notes folder with a secret next to it (outside), reachable only by escaping."""
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "relays.md").write_text("# Relays\n\nA relay forwards traffic for a peer behind NAT.\n")
    (root / "chatter.md").write_text("# Chatter\n\n" + "relay relay relay relay relay relay.\n" * 5)
    (root / "sub" / "nat.md").write_text("# Home router\n\n## NAT traversal\n\nThe router rewrites addresses.\n")
    (root / "notes.txt").write_text("not markdown: relay")
    (tmp_path / "secret.md").write_text("# Secret\n\nrelay password hunter2\n")
    (root / "leak.md").symlink_to(tmp_path / "secret.md")
    return root


@pytest.fixture
async def client(notes: Path) -> AsyncIterator[Client]:
    server = await anyio.to_thread.run_sync(build_server, notes)  # it checks the folder on disk
    async with Client(server) as connected:
        yield connected


async def search(client: Client, query: str, limit: int = 5) -> list[dict]:
    result = await client.call_tool("search_notes", {"query": query, "limit": limit})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content["hits"]


async def read_error(client: Client, path: str) -> str:
    result = await client.call_tool("read_note", {"path": path})
    assert result.is_error, f"{path!r} was read: {result.structured_content}"
    text = result.content[0].text
    assert "hunter2" not in text
    return text


async def test_title_match_ranks_above_repeated_body_mentions(client: Client) -> None:
    hits = await search(client, "relay")
    assert [hit["path"] for hit in hits[:2]] == ["relays.md", "chatter.md"]
    assert hits[0]["title"] == "Relays"
    assert "relay" in hits[0]["snippet"].lower()
    assert hits[0]["score"] > hits[1]["score"] > 0


async def test_notes_matching_every_word_rank_first(client: Client) -> None:
    hits = await search(client, "relay NAT")
    assert hits[0]["path"] == "relays.md"
    assert {hit["path"] for hit in hits} == {"relays.md", "chatter.md", "sub/nat.md"}


async def test_heading_matches_count_and_limit_caps_hits(client: Client) -> None:
    hits = await search(client, "traversal", limit=1)
    assert [hit["path"] for hit in hits] == ["sub/nat.md"]
    assert len(await search(client, "relay", limit=1)) == 1


async def test_search_never_returns_files_outside_the_folder_or_non_markdown(client: Client) -> None:
    for hit in await search(client, "relay password hunter2 markdown", limit=50):
        assert hit["path"] in {"relays.md", "chatter.md"}
        assert "hunter2" not in hit["snippet"]


async def test_search_sees_a_note_written_after_start(client: Client, notes: Path) -> None:
    (notes / "fresh.md").write_text("# Zeroconf\n\nmulticast service discovery\n")
    assert [hit["path"] for hit in await search(client, "zeroconf")] == ["fresh.md"]


async def test_search_without_words_is_a_clear_error(client: Client) -> None:
    result = await client.call_tool("search_notes", {"query": " ?! "})
    assert result.is_error
    assert "no words" in result.content[0].text


async def test_read_note_returns_the_markdown_with_or_without_suffix(client: Client, notes: Path) -> None:
    for path in ("sub/nat.md", "sub/nat"):
        result = await client.call_tool("read_note", {"path": path})
        assert not result.is_error
        assert result.structured_content == {"path": "sub/nat.md", "title": "Home router", "text": (notes / "sub" / "nat.md").read_text()}


@pytest.mark.parametrize("path", ["../secret.md", "sub/../../secret.md", "leak.md"])
async def test_read_note_refuses_paths_that_leave_the_folder(client: Client, path: str) -> None:
    assert "outside the notes folder" in await read_error(client, path)


async def test_read_note_refuses_absolute_paths(client: Client, notes: Path) -> None:
    for path in (str(notes.parent / "secret.md"), "/etc/passwd", "~/secret.md"):
        assert "absolute path" in await read_error(client, path)


async def test_read_note_refuses_files_that_are_not_markdown(client: Client) -> None:
    assert "not a Markdown note" in await read_error(client, "notes.txt")


@pytest.mark.parametrize("path", [".git/config.md", ".draft.md", ".draft", "sub/.private/plan.md", "./.draft.md", "sub/../.git/config", "door.md"])
async def test_read_note_refuses_hidden_files_and_folders_as_search_skips_them(client: Client, notes: Path, path: str) -> None:
    (notes / ".git").mkdir()
    (notes / ".git" / "config.md").write_text("# Config\n\nrelay token hunter2\n")
    (notes / ".draft.md").write_text("# Draft\n\nrelay hunter2\n")
    (notes / "sub" / ".private").mkdir()
    (notes / "sub" / ".private" / "plan.md").write_text("# Plan\n\nrelay hunter2\n")
    (notes / "door.md").symlink_to(notes / ".draft.md")  # a visible name leading into a hidden one
    assert all("hunter2" not in hit["snippet"] for hit in await search(client, "relay"))
    assert "is hidden" in await read_error(client, path)


async def test_missing_note_lists_close_matches(client: Client) -> None:
    assert "close matches: relays.md" in await read_error(client, "relay.md")
    assert "the notes are: chatter.md, relays.md, sub/nat.md" in await read_error(client, "zzzzzz.md")


async def test_bundled_demo_notes_answer_their_topics() -> None:
    async with Client(await anyio.to_thread.run_sync(build_server, BUNDLED)) as client:
        for query, expected in [("mDNS", "mdns.md"), ("relay", "relays.md"), ("GGUF", "llama-cpp.md"), ("transports", "mcp.md")]:
            assert (await search(client, query))[0]["path"] == expected


def test_build_server_rejects_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="does not exist"):
        build_server(tmp_path / "nope")


async def test_runs_standalone_over_stdio(notes: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "servers.notes", "--dir", str(notes), "--stdio"], cwd=REPO)
    with anyio.fail_after(30):
        async with Client(params, mode="legacy") as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == {"search_notes", "read_note"}
            assert (await search(client, "router"))[0]["path"] == "sub/nat.md"


def test_standalone_with_a_bad_folder_says_so(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "servers.notes", "--dir", str(tmp_path / "nope"), "--stdio"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )
    assert run.returncode == 2
    assert "does not exist or is not a folder" in run.stderr
    assert "Traceback" not in run.stderr
