"""`mesh_search`: one query over the notes of every peer that shares notes, in parallel, under one deadline.

Each peer runs its own `search_notes` (`servers.notes`: the notes never leave
their machine, only snippets travel); the hits come back cited as
`ai://<peer>/<path>`, the name the mesh gives a note everywhere. Every peer
scores with the same function of the note and the query, so scores from
different peers rank together. A peer that does not answer before the deadline,
or answers with an error, is named in `unanswered`: a slow peer costs the
caller the deadline, never more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import mcp.types as types
from pydantic import BaseModel, Field, ValidationError

from federation.errors import PeerError
from federation.urls import note_uri
from servers.notes import NoteSearch

__all__ = ["SEARCH_TOOL", "MeshSearch", "SearchHit", "Sharer", "Unanswered", "search_everywhere"]

SEARCH_TOOL = "search_notes"
"""The tool a peer that shares notes offers (`mcpfed serve --notes DIR`)."""


class SearchHit(BaseModel):
    peer: str = Field(description="id of the peer whose note this is")
    peer_name: str
    uri: str = Field(description="ai://<peer>/<path>: the note's name across the mesh")
    path: str = Field(description="path in that peer's notes folder (read_note takes it)")
    title: str
    score: float = Field(description="higher is better; every peer scores alike, so scores rank across peers")
    snippet: str


class Unanswered(BaseModel):
    peer: str
    peer_name: str
    reason: str = Field(description="why it is missing: no answer within the deadline, or the peer's error")


class MeshSearch(BaseModel):
    query: str
    hits: list[SearchHit] = Field(description="best first, across every peer that answered")
    searched: list[str] = Field(description="names of the peers that answered")
    unanswered: list[Unanswered] = Field(description="peers that share notes but gave no answer in time (or failed)")
    trace_id: str


@dataclass(frozen=True)
class Sharer:
    """A peer that shares notes (this one included)."""

    id: str
    name: str


Search = Callable[[Sharer, dict[str, Any]], Awaitable[types.CallToolResult]]
"""Calls `search_notes` with these arguments on that peer."""


async def search_everywhere(sharers: Sequence[Sharer], search: Search, query: str, *, limit: int, deadline_s: float, trace_id: str) -> MeshSearch:
    """Ask every sharer at once; keep what arrives within `deadline_s`; rank it; name who is missing."""
    found: list[SearchHit] = []
    searched: list[str] = []
    unanswered: dict[str, Unanswered] = {s.id: Unanswered(peer=s.id, peer_name=s.name, reason=f"no answer within {deadline_s:g} s") for s in sharers}

    async def one(sharer: Sharer) -> None:
        try:
            result = await search(sharer, {"query": query, "limit": limit})
            hits = _hits(sharer, result)
        except (PeerError, ValueError) as exc:
            unanswered[sharer.id] = Unanswered(peer=sharer.id, peer_name=sharer.name, reason=str(exc))
            return
        found.extend(hits)
        searched.append(sharer.name)
        del unanswered[sharer.id]

    with anyio.move_on_after(deadline_s):
        async with anyio.create_task_group() as group:
            for sharer in sharers:
                group.start_soon(one, sharer)
    found.sort(key=lambda hit: (-hit.score, hit.peer_name, hit.path))
    return MeshSearch(query=query, hits=found[:limit], searched=sorted(searched), unanswered=list(unanswered.values()), trace_id=trace_id)


def _hits(sharer: Sharer, result: types.CallToolResult) -> list[SearchHit]:
    """A peer's `search_notes` answer as cited hits; ValueError saying why when it is an error or not a search."""
    if result.is_error:
        text = "".join(c.text for c in result.content if isinstance(c, types.TextContent))
        raise ValueError(f"search_notes failed there: {text or 'no reason given'}")
    try:
        answer = NoteSearch.model_validate(result.structured_content)
    except ValidationError as exc:
        raise ValueError(f"its search_notes answered in an unknown shape ({exc.error_count()} problems)") from exc
    return [
        SearchHit(peer=sharer.id, peer_name=sharer.name, uri=note_uri(sharer.name, hit.path), path=hit.path, title=hit.title, score=hit.score, snippet=hit.snippet)
        for hit in answer.hits
    ]
