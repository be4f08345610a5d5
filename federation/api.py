"""`Mesh`: the Python API for scripts and multi-agent workflows.

```python
from federation import Mesh

async with Mesh.connect(mesh="home") as mesh:          # joins discovery, no model needed
    print(mesh.peers())
    answer = await mesh.ask("Explain mDNS in one line")  # routed to the best able peer
    drafts = await mesh.fan_out("Name a colour", n=3)    # in parallel, on different peers
    notes = await mesh.call("alice", "search_notes", {"query": "relay"})
```

`Mesh.connect` starts a *light member*: a peer without a model, on an
ephemeral loopback port, with its own identity under the state directory
(`clients/<name>`, so it never collides with a `mcpfed serve` on the same
machine) and the machine's stored mesh (`mcpfed join`) unless `mesh` is
given. It returns once the member has had its first look at the mesh
(`federation.discovery.ready`): the peers it can find are known, with their
tools, so `peers()` and `ask` work at once. Calls route client-side: the
script talks to the chosen peer directly over a pooled session, with no
extra hop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import mcp.types as types
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from federation.client import TextCallback
from federation.const import ANSWER_RESTARTS_PREFIX
from federation.contract import PeerRow
from federation.discovery.ready import first_look
from federation.errors import PeerError, ToolCallError
from federation.home import state_dir
from federation.membership import load_mesh
from federation.node import Node
from federation.routing import AskResult, Router
from federation.settings import PeerSettings
from federation.trace import Trace

__all__ = ["Answer", "Mesh", "SyncMesh", "ToolResult", "member_settings"]


class Answer(BaseModel):
    """A model's answer and who produced it."""

    text: str
    peer: str
    peer_name: str
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    ms: float = 0.0
    trace_id: str = ""
    attempts: int = Field(default=1, description="2 when the first peer died and another answered")

    @classmethod
    def from_ask(cls, result: AskResult, ms: float) -> Answer:
        return cls(
            text=result.text,
            peer=result.peer,
            peer_name=result.peer_name,
            model=result.model,
            tokens_in=int(result.usage.get("prompt_tokens", 0)),
            tokens_out=int(result.usage.get("completion_tokens", 0)),
            ms=round(ms, 1),
            trace_id=result.trace_id,
            attempts=len(result.attempts),
        )


class ToolResult(BaseModel):
    """A tool's result from a named peer."""

    peer: str
    peer_name: str
    tool: str
    data: Any = Field(description="structured content when the tool gives it, else the text")
    ms: float = 0.0
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="the result's `_meta` as received: the serving peer's signed receipt and any forwarding peers' hop records (federation.receipt)",
    )


def member_settings(name: str, home: Path | None = None, mesh: str | None = None, **options: Any) -> PeerSettings:
    """Settings of a light member (a script's `Mesh`, the gateway): no model, any free port.

    Its own identity lives under `<state>/clients/<name>`; without `mesh` it
    joins the mesh stored in `<state>` by `mcpfed init`/`join` (or `MCPFED_MESH`).
    It reads every other `MCPFED_*` variable (relays, peers, mDNS, timings)
    except those that give a peer something to serve (`MCPFED_MODEL`,
    `MCPFED_SHARE`, `MCPFED_NOTES`): they describe this machine's
    `mcpfed serve`, and the gateway a client starts, or a script, must not
    start a second copy of each shared server. Code may still give them
    (`Mesh.connect(share=[…])`).
    """
    root = state_dir(home)
    serves_nothing: dict[str, Any] = {"model": None, "share": [], "notes": None}
    values: dict[str, Any] = {"name": name, "port": 0, "home": root / "clients" / name, **serves_nothing}
    if mesh is not None:
        values["mesh"] = mesh
    settings = PeerSettings(**(values | options))
    stored = load_mesh(root)
    if stored is None or "mesh" in settings.model_fields_set:  # given in code or MCPFED_MESH
        return settings
    joined = {"mesh": stored.id, "mesh_name": stored.name, "mesh_secret": stored.secret, "relays": settings.relays or stored.relays}
    return settings.model_copy(update=joined)


class Mesh:
    """A light member of the mesh; use `async with Mesh.connect(...) as mesh`."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        *,
        mesh: str | None = None,
        peers: Sequence[str] = (),
        name: str = "mesh-client",
        home: Path | None = None,
        wait_for: int = 0,
        timeout: float = 10.0,
        **settings: Any,
    ) -> AsyncIterator[Mesh]:
        """Join the mesh (mDNS on loopback by default, plus `peers` URLs) until the block ends.

        Returns after the first look at the mesh (at most
        `FIRST_LOOK_MAX_SECONDS`); a URL in `peers` that cannot be admitted
        (unreachable, another mesh, not a peer) raises `PeerError` saying why.
        `wait_for=N` then waits (up to `timeout` s) until N peers are up.
        """
        if peers:
            settings["peers"] = list(peers)
        # Reading the stored mesh and making the state folder is file I/O: off the loop the caller may share.
        chosen = await anyio.to_thread.run_sync(partial(member_settings, name, home, mesh, **settings))
        async with Node(chosen) as node:
            member = cls(node)
            (await first_look(node.peers, node.services)).raise_for_named()
            if wait_for:
                await member.wait_for_peers(wait_for, timeout=timeout)
            yield member

    # -- the mesh ------------------------------------------------------------
    @property
    def node(self) -> Node:
        return self._node

    @property
    def _router(self) -> Router:
        return self._node.service(Router)

    def peers(self) -> list[PeerRow]:
        """Peers currently known (any status), by name."""
        return self._node.peers.snapshot()

    async def wait_for_peers(self, count: int, *, timeout: float = 10.0, model: bool = False) -> list[PeerRow]:
        """Wait until `count` peers are up (with a model, if `model`); PeerError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            ready = [p.row() for p in self._node.peers.up() if p.models or not model]
            if len(ready) >= count:
                return ready
            if time.monotonic() > deadline:
                raise PeerError(f"only {len(ready)} of {count} peers showed up within {timeout:.0f} s; are they running on this network and mesh?")
            await anyio.sleep(0.05)

    # -- calls ---------------------------------------------------------------
    async def ask(
        self,
        prompt: str,
        *,
        model: str | None = None,
        peer: str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.7,
        system: str | None = None,
        on_text: TextCallback | None = None,
        on_restart: TextCallback | None = None,
        trace: Trace | None = None,
    ) -> Answer:
        """Ask the best able peer (or `peer`); `on_text` receives the answer as it streams.

        If the answering peer dies mid-answer the ask starts again on another
        peer: `on_restart` then gets a one-line notice, and the text `on_text`
        received so far is void. Without `on_restart` the notice goes to
        `on_text`, so a printed stream shows where the answer began again.
        """
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        arguments = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            if not message:
                return
            if on_restart is not None and message.startswith(ANSWER_RESTARTS_PREFIX):
                await on_restart(message)
            elif on_text is not None:
                await on_text(message)

        clock = time.perf_counter()
        try:
            result = await self._router.ask(arguments, trace or Trace(caller=self._node.peer_id), model=model, peer=peer, on_progress=relay)
        except ToolError as exc:
            raise ToolCallError(str(exc)) from exc
        return Answer.from_ask(result, (time.perf_counter() - clock) * 1000)

    async def fan_out(self, prompt: str, n: int = 2, *, model: str | None = None, max_tokens: int = 128, temperature: float = 0.9) -> list[Answer]:
        """The same prompt on `n` peers at once (distinct peers first); failed ones are left out."""
        arguments = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": temperature}
        try:
            result = await self._router.fan_out(arguments, n, Trace(caller=self._node.peer_id), model=model)
        except ToolError as exc:
            raise ToolCallError(str(exc)) from exc
        # Each answer's own time: its attempts (a failover included), not the whole fan-out's.
        return [Answer.from_ask(a, sum(attempt.ms for attempt in a.attempts)) for a in result.answers]

    async def call(self, peer: str, tool: str, arguments: dict[str, Any] | None = None, *, trace: Trace | None = None) -> ToolResult:
        """Call `tool` on the named peer; ToolCallError carries the peer's own error text, as every other path gives it."""
        forwarder = self._node.forwarder
        target = forwarder.peer(peer)
        clock = time.perf_counter()
        result = await forwarder.call(target, tool, arguments or {}, trace or Trace(caller=self._node.peer_id), None)
        if isinstance(result, types.InputRequiredResult):  # a script has no user to ask
            raise ToolCallError(f"{tool} on {target.name} asks the user for input, which Mesh.call cannot give; call it from an MCP client that supports elicitation")
        if result.is_error:
            raise ToolCallError(_text(result))
        data = result.structured_content if result.structured_content is not None else _text(result)
        return ToolResult(peer=target.id, peer_name=target.name, tool=tool, data=data, ms=round((time.perf_counter() - clock) * 1000, 1), meta=result.meta or {})


class SyncMesh:
    """`Mesh` for plain scripts: `with SyncMesh.connect() as mesh: mesh.ask("hi")`."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, mesh: Mesh) -> None:
        self._portal = portal
        self._mesh = mesh

    @classmethod
    @contextmanager
    def connect(cls, **options: Any) -> Iterator[SyncMesh]:
        with anyio.from_thread.start_blocking_portal("asyncio") as portal:
            with portal.wrap_async_context_manager(Mesh.connect(**options)) as mesh:
                yield cls(portal, mesh)

    def peers(self) -> list[PeerRow]:
        return self._mesh.peers()

    def ask(self, prompt: str, **options: Any) -> Answer:
        return self._portal.call(lambda: self._mesh.ask(prompt, **options))

    def fan_out(self, prompt: str, n: int = 2, **options: Any) -> list[Answer]:
        return self._portal.call(lambda: self._mesh.fan_out(prompt, n, **options))

    def call(self, peer: str, tool: str, arguments: dict[str, Any] | None = None) -> ToolResult:
        return self._portal.call(lambda: self._mesh.call(peer, tool, arguments))


def _text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))

