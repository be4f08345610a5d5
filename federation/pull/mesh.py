"""From a name or `sha256:HEX` to a pulled file: who holds it, whose manifest to trust, then the download.

The holders are the peers in the node's table (mDNS, static peers, relays:
whatever found them) whose signed card shares the model, each reached by its
best route: a peer known only through a relay is pulled from through
`/p/<id>/models/…`. In a mesh every request carries a peer token addressed
to that holder (`federation.proof`), as calls do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from federation.api import Mesh
from federation.card import SharedModel
from federation.const import MODELS_PATH
from federation.errors import PullError
from federation.home import state_dir
from federation.models_store import ModelStore
from federation.node import Node
from federation.peers import Peer
from federation.proof import Tokens
from federation.pull.download import Holder, PullReport, download
from federation.pull.manifest import ModelManifest, verify_manifest
from federation.settings import PeerSettings
from federation.urls import base_url
from servers.embedded_models import EMBEDDED_MODELS

__all__ = ["MeshModel", "mesh_models", "needs_pull", "pull_for_serve", "pull_model"]

_MANIFEST_TIMEOUT_SECONDS = 10.0
_MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass
class MeshModel:
    """One model (one sha256) and the peers that share it."""

    model: SharedModel
    holders: list[Peer] = field(default_factory=list)


def mesh_models(node: Node) -> list[MeshModel]:
    """Every model shared by a live peer the node knows, by name then sha256."""
    found: dict[str, MeshModel] = {}
    for peer in node.peers.up():
        for shared in peer.card.shares:
            found.setdefault(shared.sha256, MeshModel(shared)).holders.append(peer)
    return sorted(found.values(), key=lambda entry: (entry.model.name.lower(), entry.model.sha256))


def _matches(query: str, model: SharedModel) -> bool:
    if query.lower().startswith("sha256:"):
        wanted = query[len("sha256:") :].lower()
        return len(wanted) >= 8 and model.sha256.startswith(wanted)
    return query.lower() in (model.name.lower(), Path(model.name).stem.lower())


def _choose(query: str, models: list[MeshModel]) -> MeshModel:
    chosen = [entry for entry in models if _matches(query, entry.model)]
    if len(chosen) == 1:
        return chosen[0]
    listing = ", ".join(f"{m.model.name} {m.model.quantization} sha256:{m.model.sha256[:12]} ({len(m.holders)} holders)" for m in models)
    if chosen:
        raise PullError(f"{query!r} names {len(chosen)} different files in the mesh; pull one by hash: {listing}")
    if not models:
        raise PullError(f"nobody in the mesh holds {query!r}: no peer this machine found shares any model (are the holders running, in this mesh, and sharing?)")
    raise PullError(f"nobody in the mesh holds {query!r}; the mesh holds: {listing}")


async def _manifest(http: httpx.AsyncClient, holders: list[tuple[Peer, Holder]], sha256: str, on_warning: Callable[[str], None]) -> ModelManifest:
    """The first holder's manifest that verifies; each one that does not is named and skipped."""
    problems = []
    for peer, holder in holders:
        try:
            with anyio.fail_after(_MANIFEST_TIMEOUT_SECONDS):
                response = await http.get(f"{holder.base_url}{MODELS_PATH}/{sha256}/manifest", headers=holder.headers())
            if response.status_code != 200 or len(response.content) > _MAX_MANIFEST_BYTES:
                raise PullError(f"holder {peer.name} ({peer.id}) answered the manifest request with {response.status_code}")
            return verify_manifest(response.content, holder=peer.card, sha256=sha256)
        except PullError as exc:
            problems.append(str(exc))
        except (httpx.HTTPError, TimeoutError) as exc:
            problems.append(f"holder {peer.name} ({peer.id}) could not be reached for the manifest: {type(exc).__name__}")
        on_warning(problems[-1])
    raise PullError("no holder gave a manifest that verifies: " + "; ".join(problems))


async def pull_model(
    node: Node,
    query: str,
    folder: Path,
    *,
    on_progress: Callable[[PullReport], None] = lambda report: None,
    on_wait: Callable[[], None] = lambda: None,
    on_warning: Callable[[str], None] = lambda message: None,
) -> PullReport:
    """Pull the model `query` names (name or `sha256:HEX`) from the peers `node` knows into `folder`.

    Returns at once when `folder` already holds it. Raises PullError saying
    what went wrong: nobody holds it (and what the mesh does hold), no
    manifest verifies, every holder failed (the verified part is kept), a full disk.
    """
    store = ModelStore(folder, node.identity, chunk_bytes=node.settings.model_chunk_bytes)
    await store.scan()
    local = [shared for shared in store.shared() if _matches(query, shared)]
    if len(local) == 1 and (held := store.holding(local[0].sha256)):
        return PullReport(held[1], path=held[0], already_held=True, verified_bytes=held[1].size)
    entry = _choose(query, mesh_models(node))
    reputation = await anyio.to_thread.run_sync(store.reputation)
    tokens = Tokens(node.member.keys, node.member.peer_id) if node.member else None
    peers = sorted(entry.holders, key=lambda peer: (peer.id in reputation, peer.latency_ms or 0.0))
    holders = [(peer, _holder(peer, tokens)) for peer in peers]
    timeout = httpx.Timeout(30.0, connect=5.0)
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=64), trust_env=False) as http:
        manifest = await _manifest(http, holders, entry.model.sha256, on_warning)
        return await download(manifest, [holder for _, holder in holders], store, http, on_progress=on_progress, on_wait=on_wait)


def _holder(peer: Peer, tokens: Tokens | None) -> Holder:
    headers: Callable[[], dict[str, str]] = (lambda: tokens.headers(peer.id)) if tokens else dict
    return Holder(peer.id, peer.name, base_url(peer.url), headers)


def needs_pull(choice: str | None, home: Path) -> bool:
    """A `--model` value that names no file here: `sha256:HEX`, or a name that is neither embedded, a path, nor in `<home>/models`."""
    if not choice:
        return False
    if choice.lower().startswith("sha256:"):
        return True
    if choice == "default" or choice in EMBEDDED_MODELS or Path(choice).expanduser().exists() or choice.endswith(".gguf") or "/" in choice:
        return False
    return not any(path.stem.lower() == choice.lower() for path in (home / "models").glob("*.gguf"))


async def pull_for_serve(settings: PeerSettings, **callbacks: Any) -> PeerSettings:
    """`serve --model NAME|sha256:HEX` when this machine lacks it: pull it first (as a light member), then serve the file."""
    home = state_dir(settings.home)
    if not await anyio.to_thread.run_sync(needs_pull, settings.model, home):
        return settings
    assert settings.model is not None
    member: dict[str, Any] = {"mesh": settings.mesh, "peers": settings.peers, "relays": settings.relays, "mdns": settings.mdns}
    if settings.mesh_secret:
        member |= {"mesh_secret": settings.mesh_secret, "mesh_name": settings.mesh_name}
    async with Mesh.connect(name="pull", home=settings.home, **member) as mesh:
        report = await pull_model(mesh.node, settings.model, home / "models", **callbacks)
    return settings.model_copy(update={"model": str(report.path)})
