"""Mesh membership: the mesh a machine belongs to, join tokens, and the credential check.

A *mesh* is an id, a display name, a random secret and the relays its
members use. `mcpfed init --mesh home` makes one; `mcpfed invite` prints a
join token; `mcpfed join TOKEN` stores it on another machine. The mesh lives
in `<state dir>/mesh.json` (mode 0600, it holds the secret).

Join token: `mcpfed1.` followed by the base64url (no padding) of the JSON
object `{"v": 1, "id": ..., "name": ..., "secret": ..., "relays": [...]}`.
Anyone holding it is a member: send it like a password.

Credentials `MeshGuard` accepts: `Authorization: Bearer <mesh secret>`, the
one stock MCP clients (the Inspector, Claude through a header config, curl,
`--token`) can send and only people hand out; or a per-pair peer token
(`federation.proof`) naming this peer (or, at a relay, the peer a `/p/<id>/`
path goes to) as its audience, which is all peers ever send each other. The
raw secret never goes from peer to peer: they prove they hold it instead.
Anything else gets 401 and a JSON-RPC error body, which the MCP SDK shows to
its user instead of a bare "401".
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from federation.const import JOIN_TOKEN_PREFIX, MESH_FILE
from federation.errors import ConfigError
from federation.proof import MeshKeys, token_issuer
from federation.refusal import refuse

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from federation.settings import PeerSettings

__all__ = [
    "UNAUTHORIZED_CODE",
    "MeshCredentials",
    "MeshGuard",
    "auth_headers",
    "create_mesh",
    "credential_problem",
    "invite",
    "join",
    "load_mesh",
    "normalize_relay_url",
    "parse_token",
    "proven_peer",
]

UNAUTHORIZED_CODE = -32041
"""JSON-RPC error code of a 401 (in the implementation-defined server range)."""

_JOIN_HINT = "To join, run `mcpfed invite` on a member machine and `mcpfed join <token>` on this one."


class MeshCredentials(BaseModel):
    """What a member knows about its mesh; the stored file and the token carry the same fields."""

    id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=64)
    secret: str = Field(min_length=16, repr=False)
    relays: list[str] = Field(default_factory=list)


def normalize_relay_url(url: str) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash; ConfigError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"relay URL {url!r} must look like http://host:port or https://host (the relay's base URL).")
    if parts.query or parts.fragment:
        raise ConfigError(f"relay URL {url!r} must not carry a query or fragment.")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _merge_relays(*groups: Iterable[str]) -> list[str]:
    merged: list[str] = []
    for group in groups:
        for url in group:
            normalized = normalize_relay_url(url)
            if normalized not in merged:
                merged.append(normalized)
    return merged


# -- storage -----------------------------------------------------------------
def _mesh_path(home: Path) -> Path:
    return home / MESH_FILE


def load_mesh(home: Path) -> MeshCredentials | None:
    """The stored mesh of this state directory, or None when the machine has joined none."""
    path = _mesh_path(home)
    try:
        raw = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return MeshCredentials.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path} is damaged ({exc.errors()[0]['msg']}); run `mcpfed join TOKEN --force` to replace it.") from exc


def _save_mesh(home: Path, mesh: MeshCredentials) -> None:
    """Write the mesh file with mode 0600 from the start (it holds the secret)."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = _mesh_path(home)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(mesh.model_dump_json(indent=2))
    os.replace(temporary, path)


def _refuse_to_replace(existing: MeshCredentials | None, incoming_id: str | None, force: bool) -> None:
    if existing is None or force or existing.id == incoming_id:
        return
    raise ConfigError(
        f"this machine already belongs to mesh {existing.name!r} ({existing.id}); "
        "pass --force to leave it (its members will no longer accept this machine)."
    )


def create_mesh(home: Path, name: str, *, relays: Iterable[str] = (), force: bool = False) -> MeshCredentials:
    """Make a new mesh (random id and secret) and store it; `mcpfed init --mesh NAME`."""
    _refuse_to_replace(load_mesh(home), None, force)
    mesh = MeshCredentials(id=secrets.token_hex(8), name=name, secret=secrets.token_urlsafe(32), relays=_merge_relays(relays))
    _save_mesh(home, mesh)
    return mesh


def invite(home: Path, relays: Iterable[str] = ()) -> str:
    """A join token for the stored mesh; relays given here are remembered for this machine too."""
    mesh = load_mesh(home)
    if mesh is None:
        raise ConfigError("this machine belongs to no mesh yet: create one with `mcpfed init --mesh NAME` first.")
    merged = _merge_relays(mesh.relays, relays)
    if merged != mesh.relays:
        mesh = mesh.model_copy(update={"relays": merged})
        _save_mesh(home, mesh)
    body = {"v": 1, **mesh.model_dump()}
    encoded = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode("utf-8")).rstrip(b"=")
    return JOIN_TOKEN_PREFIX + encoded.decode("ascii")


def parse_token(token: str) -> MeshCredentials:
    """The mesh inside a join token; ConfigError saying what is wrong with a bad one."""
    token = token.strip()
    if not token.startswith(JOIN_TOKEN_PREFIX):
        raise ConfigError(f"this is not an mcpfed join token: it should start with {JOIN_TOKEN_PREFIX!r}. Copy the whole line `mcpfed invite` printed.")
    payload = token[len(JOIN_TOKEN_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("the join token is damaged (it does not decode); copy it again in full, without spaces or line breaks.") from exc
    if not isinstance(body, dict) or body.get("v") != 1:
        raise ConfigError("the join token is from an unknown version of mcpfed; ask for a new one with `mcpfed invite`.")
    try:
        mesh = MeshCredentials.model_validate({k: v for k, v in body.items() if k != "v"})
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise ConfigError(f"the join token is damaged ({'.'.join(map(str, problem['loc']))}: {problem['msg']}); ask for a new one with `mcpfed invite`.") from exc
    return mesh.model_copy(update={"relays": _merge_relays(mesh.relays)})


def join(home: Path, token: str, *, force: bool = False) -> MeshCredentials:
    """Store the mesh of a join token; rejoining the same mesh merges its relays."""
    incoming = parse_token(token)
    existing = load_mesh(home)
    _refuse_to_replace(existing, incoming.id, force)
    if existing is not None and existing.id == incoming.id:
        incoming = incoming.model_copy(update={"relays": _merge_relays(existing.relays, incoming.relays)})
    _save_mesh(home, incoming)
    return incoming


# -- the credential ------------------------------------------------------------
def auth_headers(settings: PeerSettings) -> dict[str, str]:
    """The raw mesh credential, for this machine's own client commands (a user's); empty outside a mesh.

    Peers never send it to each other (see `federation.proof`).
    """
    if not settings.mesh_secret:
        return {}
    return {"Authorization": f"Bearer {settings.mesh_secret}"}


def credential_problem(authorization: str | None, secret: str | None, *, keys: MeshKeys | None = None, audience: str | None = None) -> str | None:
    """Why `authorization` (an Authorization header value) does not prove membership, or None if it does.

    The raw secret passes; with `keys`, so does a peer token addressed to `audience`.
    """
    if not secret:
        return None
    if not authorization:
        return "missing"
    scheme, _, presented = authorization.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        return "malformed"
    if hmac.compare_digest(presented.encode("utf-8"), secret.encode("utf-8")):
        return None
    problem = keys.token_problem(presented, audience) if keys is not None else "not_a_token"
    return "wrong" if problem == "not_a_token" else problem


_PROBLEMS = {
    "missing": "no mesh credential was sent",
    "malformed": "the Authorization header is not 'Bearer <mesh secret>'",
    "wrong": "the mesh credential sent is not this mesh's",
    "token_forged": "the peer token sent was not made with this mesh's secret",
    "token_other_audience": "the peer token sent is addressed to another peer",
    "token_expired": "the peer token sent has expired",
}


_PROVEN_PEER = "mcpfed.proven_peer"


def proven_peer(scope: Scope) -> str | None:
    """The peer whose valid token this request carried (set by `MeshGuard`), or None (a stock client, no mesh)."""
    peer = scope.get("state", {}).get(_PROVEN_PEER)
    return peer if isinstance(peer, str) else None


class MeshGuard:
    """ASGI middleware: only mesh members get past it (HTTP and WebSocket), except `open_paths`.

    Without a secret it lets everything through: a node outside any mesh
    stays open on loopback, as `PeerSettings.bind_problem` insists.
    `audience(scope)` names the peer a request is for (a peer's own id; at a
    relay the peer of a `/p/<id>/` path): peer tokens for it pass too.
    `open_paths` is a set of paths, or a test of one (a relay opens every
    peer's proof endpoint behind it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret: str | None,
        mesh_name: str | None,
        open_paths: Iterable[str] | Callable[[str], bool] = (),
        audience: Callable[[Scope], str | None] = lambda scope: None,
    ) -> None:
        self.app = app
        self._secret = secret
        self._keys = MeshKeys(secret) if secret else None
        self._mesh_name = mesh_name
        self._is_open = open_paths if callable(open_paths) else frozenset(open_paths).__contains__
        self._audience = audience

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self._secret or self._is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        problem = credential_problem(authorization, self._secret, keys=self._keys, audience=self._audience(scope))
        if problem is None:
            if authorization and (issuer := token_issuer(authorization.partition(" ")[2].strip())):
                scope.setdefault("state", {})[_PROVEN_PEER] = issuer  # what rate limits and model turns count by
            await self.app(scope, receive, send)
            return
        await self._deny(scope, send, problem)

    async def _deny(self, scope: Scope, send: Send, problem: str) -> None:
        mesh = f" of mesh {self._mesh_name!r}" if self._mesh_name else ""
        message = (
            f"401 unauthorized: {_PROBLEMS[problem]}. This endpoint answers only members{mesh}: "
            f"send 'Authorization: Bearer <mesh secret>' (mcpfed does it for you once the machine has joined). {_JOIN_HINT}"
        )
        data = {"reason": f"mesh_credential_{problem}"}
        await refuse(scope, send, 401, message, code=UNAUTHORIZED_CODE, data=data, headers=[(b"www-authenticate", b'Bearer realm="mcpfed-mesh"')])
