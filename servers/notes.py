"""Local Markdown notes as an MCP server: `search_notes` and `read_note`, and each note as a resource.

The data-sovereignty demo: the notes stay on the machine that owns them and
only answers travel. A peer started with `mcpfed serve --notes DIR` hosts this
server next to its other tools; standalone it runs with
`python -m servers.notes --dir DIR [--port P | --stdio]`.

Search is deliberately simple and explainable (no index, no embeddings): every
`*.md` file under the folder is re-read per search in a worker thread, so
edits show up at once, and each query word scores by where it appears —
title over heading over body — scaled by how many of the query's words the
note contains. `read_note` only opens Markdown files inside the folder:
absolute paths, `..` and symlinks that lead out are refused.

Every note is also a Markdown resource `<uri_base><path>` (a peer passes
`ai://<peer>/`; standalone it is `notes:///`), listed afresh on each
`resources/list`, with the template `<uri_base>{+path}` whose `path`
completes to note paths. Reads go through the same checks as `read_note`.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import anyio
import mcp.types as types
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from servers.standalone import add_transport_args, serve

__all__ = ["Note", "NoteHit", "NoteSearch", "NotesFolder", "build_server", "main"]

MARKDOWN = "text/markdown"
STANDALONE_URI_BASE = "notes:///"

NOTE_SUFFIXES = (".md", ".markdown")
MAX_NOTE_BYTES = 1_000_000
"""Larger files are skipped by search and refused by read_note: notes, not data dumps."""

SNIPPET_CHARS = 200
TITLE_WEIGHT, HEADING_WEIGHT = 5.0, 3.0
PHRASE_BONUS = 3.0

_WORD = re.compile(r"\w+")


class NoteHit(BaseModel):
    path: str = Field(description="Path relative to the notes folder; pass it to read_note.")
    title: str
    score: float = Field(description="Higher is better; only comparable within one search.")
    snippet: str = Field(description="The passage around the best match.")


class NoteSearch(BaseModel):
    query: str
    hits: list[NoteHit]
    notes_searched: int


class Note(BaseModel):
    path: str
    title: str
    text: str = Field(description="The note's Markdown source.")


@dataclass(frozen=True)
class _Parsed:
    path: str
    title: str
    headings: str
    body: str
    text: str


def _normalise(word: str) -> str:
    """Lower-case and fold a plural 's', so 'relays' finds 'relay' and back."""
    word = word.lower()
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _terms(text: str) -> list[str]:
    return [_normalise(m.group()) for m in _WORD.finditer(text)]


def _parse(path: str, text: str) -> _Parsed:
    """Split a note into title (first `# ` heading, else file name), other headings, and body."""
    title, headings, body = "", [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
            if not title and stripped.startswith("# "):
                title = heading
            else:
                headings.append(heading)
        else:
            body.append(line)
    return _Parsed(path, title or PurePosixPath(path).stem, "\n".join(headings), "\n".join(body), text)


def _score(note: _Parsed, terms: list[str], phrase: str) -> float:
    title, headings = set(_terms(note.title)), set(_terms(note.headings))
    body = _terms(note.body)
    score, matched = 0.0, 0
    for term in terms:
        hits = body.count(term)
        in_title, in_headings = term in title, term in headings
        if in_title or in_headings or hits:
            matched += 1
        score += TITLE_WEIGHT * in_title + HEADING_WEIGHT * in_headings + math.log1p(hits)
    if matched == 0:
        return 0.0
    if len(terms) > 1 and phrase in note.text.lower():
        score += PHRASE_BONUS
    return round(score * matched / len(terms), 3)


def _snippet(note: _Parsed, terms: list[str]) -> str:
    """The body passage around the first query word (the title if only it matched)."""
    text = " ".join(note.body.split())
    wanted = set(terms)
    for match in _WORD.finditer(text):
        if _normalise(match.group()) in wanted:
            start = max(0, match.start() - SNIPPET_CHARS // 3)
            end = min(len(text), start + SNIPPET_CHARS)
            return ("…" if start else "") + text[start:end].strip() + ("…" if end < len(text) else "")
    return note.title


class NotesFolder:
    """The notes under one folder; every file access goes through `resolve`."""

    def __init__(self, root: Path) -> None:
        root = root.expanduser()
        if not root.is_dir():
            raise NotADirectoryError(f"notes folder {root} does not exist or is not a folder")
        self.root = root.resolve()

    def _inside(self, path: Path) -> Path | None:
        """`path` resolved (symlinks followed) if it stays inside the folder, else None."""
        resolved = path.resolve()
        return resolved if resolved.is_relative_to(self.root) else None

    def files(self) -> list[str]:
        """Relative paths of every note, skipping hidden files and folders and links that lead out of the folder or into a hidden one."""
        found = []
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if path.suffix.lower() not in NOTE_SUFFIXES or _hidden(relative):
                continue
            target = self._inside(path)
            if target is not None and not _hidden(target.relative_to(self.root)) and target.is_file() and target.stat().st_size <= MAX_NOTE_BYTES:
                found.append(relative.as_posix())
        return found

    def _read(self, relative: str) -> str:
        return (self.root / relative).read_text(encoding="utf-8", errors="replace")

    def search(self, query: str, limit: int) -> NoteSearch:
        terms = list(dict.fromkeys(_terms(query)))
        if not terms:
            raise ToolError("the query has no words to search for; try e.g. 'mdns discovery'.")
        phrase = " ".join(query.lower().split())
        files = self.files()
        hits = []
        for relative in files:
            note = _parse(relative, self._read(relative))
            score = _score(note, terms, phrase)
            if score > 0:
                hits.append(NoteHit(path=relative, title=note.title, score=score, snippet=_snippet(note, terms)))
        hits.sort(key=lambda hit: (-hit.score, hit.path))
        return NoteSearch(query=query, hits=hits[:limit], notes_searched=len(files))

    def resolve(self, requested: str) -> str:
        """The relative path of the note `requested` names, or a ToolError saying why not."""
        if not requested.strip() or "\x00" in requested:
            raise ToolError("path is empty or not a path; pass a path from search_notes, like 'mdns.md'.")
        candidate = Path(requested)
        if candidate.is_absolute() or requested.startswith("~"):
            raise ToolError(f"{_shown(requested)} is an absolute path; pass a path relative to the notes folder, like 'mdns.md'.")
        if not candidate.suffix:
            candidate = candidate.with_suffix(".md")
        if candidate.suffix.lower() not in NOTE_SUFFIXES:
            raise ToolError(f"{_shown(requested)} is not a Markdown note; only .md files can be read.")
        try:
            target = self._inside(self.root / candidate)
            if target is None:
                raise ToolError(f"{_shown(requested)} is outside the notes folder; only notes inside it can be read.")
            relative = target.relative_to(self.root).as_posix()
            if _hidden(candidate) or _hidden(Path(relative)):  # as search_notes skips them, whatever the link or path
                raise ToolError(f"{_shown(requested)} is hidden (a name in it starts with '.'); hidden files and folders are not served as notes.")
            if not target.is_file():
                raise ToolError(self._missing(requested))
            if target.stat().st_size > MAX_NOTE_BYTES:
                raise ToolError(f"{relative} is larger than {MAX_NOTE_BYTES} bytes; it is not served as a note.")
        except OSError as exc:  # a name the file system refuses (too long, …) names no note
            reason = "the path is too long to be a note" if exc.errno == errno.ENAMETOOLONG else f"it cannot be read ({exc.strerror})"
            raise ToolError(f"no note {_shown(requested)}: {reason}; pass a path from search_notes, like 'mdns.md'.") from exc
        return relative

    def _missing(self, requested: str) -> str:
        files = self.files()
        close = difflib.get_close_matches(requested, files, n=3, cutoff=0.6)
        if close:
            return f"no note {_shown(requested)}; close matches: {', '.join(close)}."
        listing = ", ".join(files[:10]) or "(the folder has no notes)"
        return f"no note {_shown(requested)}; the notes are: {listing}."

    def read(self, requested: str) -> Note:
        relative = self.resolve(requested)
        text = self._read(relative)
        return Note(path=relative, title=_parse(relative, text).title, text=text)


def _hidden(path: Path) -> bool:
    """A path with a hidden component (`.git/x.md`, `.draft.md`); `.` and `..` are steps, not names."""
    return any(part.startswith(".") and part not in (".", "..") for part in path.parts)


def _shown(requested: str) -> str:
    """A requested path as quoted in an error, cut short: a 5,000-character path need not come back whole."""
    return repr(requested) if len(requested) <= 80 else repr(requested[:60]) + f"… ({len(requested)} characters)"


_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


class _NotesServer(MCPServer):
    """An `MCPServer` whose resources are the folder's notes as they are now, not a list fixed at start."""

    def __init__(self, folder: NotesFolder, uri_base: str, name: str) -> None:
        super().__init__(
            name,
            version="0.1.0",
            instructions="Local Markdown notes. search_notes finds notes by words; read_note returns one note's text; each note is a resource.",
            log_level="WARNING",
        )
        self._folder = folder
        self._base = uri_base

    async def list_resources(self) -> list[types.Resource]:
        files = await anyio.to_thread.run_sync(self._folder.files)
        return [types.Resource(uri=self._base + path, name=path, mime_type=MARKDOWN) for path in files]

    async def list_resource_templates(self) -> list[types.ResourceTemplate]:
        return [types.ResourceTemplate(uri_template=self._base + "{+path}", name="note", description="A note by its path in the notes folder.", mime_type=MARKDOWN)]

    async def read_resource(self, uri: Any, context: Context[Any, Any] | None = None) -> Iterable[ReadResourceContents]:
        uri = str(uri)
        if not uri.startswith(self._base):
            raise ResourceError(f"{uri} is not a note here; notes are {self._base}<path>, see resources/list.")
        try:
            note = await anyio.to_thread.run_sync(self._folder.read, uri.removeprefix(self._base))
        except ToolError as exc:
            raise ResourceError(str(exc)) from exc
        return [ReadResourceContents(content=note.text, mime_type=MARKDOWN)]

    async def complete_path(self, partial: str) -> types.Completion:
        files = await anyio.to_thread.run_sync(self._folder.files)
        found = [path for path in files if path.startswith(partial)] or [path for path in files if partial.lower() in path.lower()]
        return types.Completion(values=found[:100], total=len(found), has_more=len(found) > 100)


def build_server(notes_dir: Path, *, name: str = "notes", uri_base: str = STANDALONE_URI_BASE) -> MCPServer:
    """An MCP server over the Markdown notes in `notes_dir` (NotADirectoryError if it is not a folder)."""
    folder = NotesFolder(notes_dir)
    server = _NotesServer(folder, uri_base, name)

    @server.completion()
    async def complete(ref: types.PromptReference | types.ResourceTemplateReference, argument: types.CompletionArgument, context: Any) -> types.Completion | None:
        if isinstance(ref, types.ResourceTemplateReference) and argument.name == "path":
            return await server.complete_path(argument.value)
        return None

    @server.tool(annotations=_READ_ONLY)
    async def search_notes(
        query: Annotated[str, Field(description="Words to look for, e.g. 'relay NAT'.")],
        limit: Annotated[int, Field(ge=1, le=50, description="Most notes to return.")] = 5,
    ) -> NoteSearch:
        """Search the local Markdown notes; best matches first (title > heading > body), each with a snippet."""
        return await anyio.to_thread.run_sync(folder.search, query, limit)

    @server.tool(annotations=_READ_ONLY)
    async def read_note(
        path: Annotated[str, Field(description="A path from search_notes, relative to the notes folder.")],
    ) -> Note:
        """Return one note's Markdown text."""
        return await anyio.to_thread.run_sync(folder.read, path)

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m servers.notes", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="folder of Markdown notes to serve")
    add_transport_args(parser, port=8812)
    args = parser.parse_args(argv)
    try:
        server = build_server(args.dir)
    except NotADirectoryError as exc:
        parser.error(str(exc))
    serve(server, args)


if __name__ == "__main__":
    main()
