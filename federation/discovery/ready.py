"""A member's first look: know the mesh it can already know before answering anyone.

Claude Desktop and Gemini CLI list a server's tools once, when they start it.
A gateway that answered at once would show them only the `mesh_*` tools and
no peer to ask: peers arrive a moment later. So a gateway (and `Mesh.connect`)
first waits until

- every `--peer` URL the user named is admitted, or refused for a reason;
- every peer its stored table remembers is verified again, or found silent;
- its mDNS browse has listened for `MDNS_SETTLE_SECONDS` and examined every
  instance it heard of;
- and the router has listed the tools of every peer admitted so far,

returning as soon as all of that holds and after `FIRST_LOOK_MAX_SECONDS` at
most, with whatever it knows by then. A named peer that was refused or never
answered is then an error (`FirstLook.raise_for_named`): the user asked for
that peer, so prompts must not quietly go to whoever else was found.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio

from federation.const import FIRST_LOOK_MAX_SECONDS, MDNS_SETTLE_SECONDS
from federation.discovery.mdns import MdnsDiscovery
from federation.discovery.persist import Recollection
from federation.discovery.static import NamedPeer, StaticPeers
from federation.errors import PeerError
from federation.peers import Peer, PeerTable
from federation.routing import Router

__all__ = ["FirstLook", "first_look"]

_POLL_SECONDS = 0.02

_HINTS = {
    "other-mesh": "join that peer's mesh (`mcpfed join TOKEN` or `--mesh`), or name a peer of this one",
    "bad-card": "it answered but is not a working mcp-federation peer",
    "spoofed-id": "it answered but is not a working mcp-federation peer",
    "bad-response": "is that the URL `mcpfed serve` printed (http://HOST:PORT/mcp), and is it in this mesh?",
}


def _named_problem(named: NamedPeer, limit: float) -> str:
    """One sentence: why the peer at a `--peer` URL cannot be used."""
    rejected = named.rejected
    if rejected is None or rejected.reason in ("unreachable", "timeout"):
        return f"peer {named.url} did not answer within {limit:g} s; is `mcpfed serve` running there, and is the URL the one it printed?"
    hint = _HINTS.get(rejected.reason)
    return f"peer {named.url} was refused: {rejected}" + (f"; {hint}." if hint else ".")


@dataclass
class FirstLook:
    """What a member knew when it started answering."""

    peers: list[Peer]
    seconds: float
    silent: list[str] = field(default_factory=list)
    """Expected peers that did not answer (stored ones by name, named ones by URL)."""
    named_problems: list[str] = field(default_factory=list)
    """Why each `--peer` URL that could not be admitted was not."""

    def summary(self, who: str) -> str:
        """E.g. `gateway ready: 3 peers (alice, bob, notes) in 1.5 s`, then who did not answer."""
        count = f"{len(self.peers)} peer{'' if len(self.peers) == 1 else 's'}"
        names = f" ({', '.join(p.name for p in self.peers)})" if self.peers else ""
        line = f"{who} ready: {count}{names} in {self.seconds:.1f} s"
        if self.silent:
            line += f"; did not answer: {', '.join(self.silent)}"
        return line

    def raise_for_named(self) -> None:
        """PeerError when a peer the user named could not be admitted (see the module docstring)."""
        if self.named_problems:
            raise PeerError(" ".join(self.named_problems))


async def first_look(peers: PeerTable, services: Iterable[object], *, limit: float = FIRST_LOOK_MAX_SECONDS) -> FirstLook:
    """Wait (at most `limit` s) until the mesh a member can already know is known; see the module docstring.

    `peers` is its peer table, `services` its running services (`Node.services`):
    those that find peers say when they are done.
    """
    clock = time.monotonic()
    running = list(services)

    def find(kind: type) -> object | None:
        return next((service for service in running if isinstance(service, kind)), None)

    static = find(StaticPeers)
    named = static.named if isinstance(static, StaticPeers) else []
    recalled = find(Recollection)
    mdns = find(MdnsDiscovery)
    router = find(Router)

    def refused() -> bool:
        return any(n.refused for n in named)

    def complete() -> bool:
        return (
            all(n.peer_id is not None for n in named)
            and (not isinstance(recalled, Recollection) or recalled.settled())
            and (not isinstance(mdns, MdnsDiscovery) or mdns.settled(MDNS_SETTLE_SECONDS))
            and (not isinstance(router, Router) or router.settled())
        )

    with anyio.move_on_after(limit):
        while not (complete() or refused()):
            await anyio.sleep(_POLL_SECONDS)
    silent = [n.url for n in named if n.peer_id is None]
    if isinstance(recalled, Recollection):
        silent += [p.name for p in recalled.silent()]
    return FirstLook(
        peers=sorted(peers.up(), key=lambda p: (p.name, p.id)),
        seconds=time.monotonic() - clock,
        silent=silent,
        named_problems=[_named_problem(n, limit) for n in named if n.peer_id is None],
    )
