"""Other peers' own tools, learned over the session pool and offered as `<peer>__<tool>`.

Peers that join together are listed concurrently; clients hear one
`tools/list_changed` when the last listing of such a burst ends. A dead
peer's tools are no longer offered, but its names still resolve (until the
peer is forgotten) so a call says the peer is unreachable rather than that
the tool is unknown; live peers win any name clash.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable

import anyio
import mcp.types as types

from federation.peers import PeerTable
from federation.routing.sessions import SessionPool, root_cause

__all__ = ["Catalog", "NAME_LIMIT", "namespaced"]

logger = logging.getLogger(__name__)

NAME_LIMIT = 48
"""Longest name the mesh gives a tool (prompt, resource): Gemini CLI calls a tool `mcp_<server>_<name>` and
refuses over 63 characters, so 48 leaves a server name of up to 10 characters (`mcp_mcpfed_` is 11)."""
_SEPARATOR = "__"
_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")
_TAG_CHARS = 10
_TAGGED = re.compile(rf"[-_][0-9a-f]{{{_TAG_CHARS}}}$")
_PEER_SHARE = 16
"""Of a shortened name, the most characters the peer part keeps (the tool part gets the rest)."""
_LIST_SECONDS = 5.0

Refresh = Callable[[bool], Awaitable[None]]
"""Tells the tool host the offered tools changed; the flag says whether to announce it to clients now."""


def namespaced(peer_label: str, tool: str, *, salt: str = "") -> str:
    """`<peer>__<tool>`: at most `NAME_LIMIT` characters of [A-Za-z0-9_-], the same for the same inputs.

    The plain form is kept only when it reads back unambiguously: both parts
    unchanged, the peer part without `__` and not ending in `_` (so the first
    `__` splits it), and the tool not ending like a tag. Anything else
    (too long, characters replaced, a `salt` given) is shortened and tagged
    with 10 hex characters of a hash of the exact inputs, `<peer>__<tool>_<tag>`,
    a form no plain name takes; so different inputs give different names
    except for a hash collision, which `Catalog.publish` settles with the
    peer id as `salt`.
    """
    peer_part = _peer_part(peer_label)
    if not salt and _plain(peer_label, tool) and len(name := f"{peer_label}{_SEPARATOR}{tool}") <= NAME_LIMIT:
        return name
    tag = hashlib.sha256(f"{peer_label}\x00{tool}\x00{salt}".encode()).hexdigest()[:_TAG_CHARS]
    budget = NAME_LIMIT - len(_SEPARATOR) - 1 - _TAG_CHARS
    tool_part = _FORBIDDEN.sub("_", tool) or "tool"
    peer_part = peer_part[: max(_PEER_SHARE, budget - len(tool_part))].rstrip("_") or "peer"
    return f"{peer_part}{_SEPARATOR}{tool_part[: budget - len(peer_part)]}_{tag}"


def _plain(peer_label: str, tool: str) -> bool:
    """Whether `<peer>__<tool>` splits back into exactly these two (and cannot pass for a tagged name)."""
    return (
        bool(tool)
        and not _FORBIDDEN.search(peer_label + tool)
        and peer_label == _peer_part(peer_label)
        and _SEPARATOR not in peer_label
        and not _TAGGED.search(tool)
    )


def _peer_part(peer_label: str) -> str:
    return _FORBIDDEN.sub("_", peer_label).strip("_") or "peer"


class Catalog:
    """The `<peer>__<tool>` names this peer offers, and which (peer id, tool) each stands for."""

    def __init__(self, peers: PeerTable, sessions: SessionPool, refresh: Refresh) -> None:
        self._peers = peers
        self._sessions = sessions
        self._refresh = refresh
        self._remote_tools: dict[str, list[types.Tool]] = {}
        self._names: dict[str, tuple[str, str]] = {}  # namespaced -> (peer id, tool)
        self._labels: dict[str, str] = {}  # the `<peer>` part of the names -> peer id
        self.exposed: list[types.Tool] = []
        """The live peers' tools as clients see them (renamed, described as on which peer)."""
        self._listing: set[str] = set()  # peers whose tools are being listed right now
        self._listed: set[str] = set()  # peers whose tools were listed at least once (or failed to be)

    async def learn(self, peer_id: str, *, listed_changed: bool = False) -> None:
        """Fetch a peer's own tools (schemas included) over its pooled session, then republish.

        A peer whose card lists no tools is not asked (its card changes, and is
        learned again, when it gains one): in a mesh of light peers that spared
        every peer a session with every other (N² sessions at start-up). The
        peer's own `tools/list_changed` (`listed_changed`) is always followed:
        it can come before the new card does.
        """
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        if not peer.card.tools and not listed_changed:  # its signed card lists its own tools: none, so a session would list nothing
            self._listed.add(peer_id)
            if self._remote_tools.pop(peer_id, None):
                await self.publish()
            return
        self._listing.add(peer_id)
        try:
            client = await self._sessions.client(peer)
            with anyio.fail_after(_LIST_SECONDS):
                listed = await client.list_tools()
        except Exception as exc:  # noqa: BLE001 - an unreachable peer just offers nothing for now
            logger.info("could not list tools of %s (%s): %s", peer.name, peer_id, root_cause(exc))
            self._sessions.drop(peer_id)
        else:
            self._remote_tools[peer_id] = [t for t in listed.tools if not t.name.startswith("mesh_") and _SEPARATOR not in t.name]
        finally:
            self._listing.discard(peer_id)
            self._listed.add(peer_id)
        await self.publish()

    async def peer_down(self, peer_id: str) -> None:
        """A peer went down: its session goes; its names too if it left or was forgotten (a dead one keeps them)."""
        self._sessions.drop(peer_id)
        if peer_id not in self._peers:
            self._remote_tools.pop(peer_id, None)
            self._listed.discard(peer_id)
        await self.publish()

    def settled(self) -> bool:
        """Every peer that is up has had its tools listed (or failed to), and no listing is running."""
        return not self._listing and all(p.id in self._listed for p in self._peers.up())

    async def publish(self) -> None:
        """Rebuild `<peer>__<tool>` names (peers sharing a name get their id prefix appended) and tell the tool host.

        Peers are taken in id order, so the names depend on who is known, not on who arrived first.
        """
        known = [p for p in (self._peers.get(i) for i in sorted(self._remote_tools)) if p is not None]
        live = [p for p in known if p.status != "dead"]
        name_counts = Counter(p.name for p in live)
        names: dict[str, tuple[str, str]] = {}
        labels: dict[str, str] = {}
        exposed: list[types.Tool] = []
        for peer in [*live, *(p for p in known if p.status == "dead")]:
            clash = name_counts[peer.name] > (0 if peer.status == "dead" else 1)
            label = f"{peer.name}-{peer.id[:6]}" if clash else peer.name
            labels.setdefault(_peer_part(label), peer.id)
            for tool in self._remote_tools[peer.id]:
                name = namespaced(label, tool.name)
                if name in names:  # a hash collision of shortened names (or a label clash): settled by the peer id
                    name = namespaced(label, tool.name, salt=peer.id)
                if name in names:
                    continue
                names[name] = (peer.id, tool.name)
                if peer.status != "dead":
                    description = f"[on peer {peer.name} ({peer.id})] {tool.description or ''}".strip()
                    exposed.append(tool.model_copy(update={"name": name, "description": description}))
        self._names, self._labels, self.exposed = names, labels, exposed
        await self._refresh(not self._listing)

    def remote_tool(self, name: str) -> tuple[str, str] | None:
        """(peer id, tool) behind a `<peer>__<tool>` name (a dead peer's too), or None.

        A name of a known peer's that it does not offer still resolves, so that
        peer answers it ("Unknown tool …"), as it does through `mesh_call`.
        """
        if (known := self._names.get(name)) is not None:
            return known
        label, separator, tool = name.partition(_SEPARATOR)
        peer_id = self._labels.get(label) if separator and tool else None
        return None if peer_id is None else (peer_id, tool)
