"""Proving mesh membership without showing the secret, and the short-lived per-pair tokens it unlocks.

Why: a bearer header goes to whoever the sender dials, and on a LAN anyone can
announce anything over mDNS. So between peers the mesh secret never travels;
each side proves it holds it, and requests carry tokens only the addressed
peer accepts.

The proof (`POST /mesh/proof`, open like `/health`), caller C, responder R:

1. C sends `{"step": "challenge", "caller": C, "nonce": Nc, "to": URL}` (URL:
   the base URL C dialed). R answers `{"responder": R, "nonce": Nr,
   "addressed": bool, "proof": MAC("responder", kind, R, C, Nc, Nr, URL, addressed)}`,
   `addressed` saying whether URL is one of R's own addresses. C checks the MAC,
   that R is the peer it expected (the id in the TXT record) and, for an
   address it did not choose itself (mDNS), that R was addressed: a stranger
   that forwards C's challenge to a real member gets an answer that names the
   stranger's address, not the member's, and C stops there.
2. C sends `{"step": "confirm", "caller": C, "nonce": Nr, "proof":
   MAC("caller", kind, C, R, Nc, Nr, URL)}`. R takes Nr out of its pending table
   (single use, `PROOF_TTL_SECONDS`, at most `PROOF_PENDING_LIMIT`), checks
   the MAC and answers with its signed card (a relay: its id and URL).

`kind` is "peer" or "relay": what C set out to reach, so a member peer's
answer forwarded by someone posing as a relay does not verify.

MAC is HMAC-SHA256 under a key derived from the secret (HKDF, label
`mcpfed proof v1`); the role word ("responder"/"caller") keeps one side's
proof from being reflected as the other's, and both fresh nonces keep an old
proof from being replayed.

Tokens: `mcpfed-t1.<issuer>.<audience>.<expiry>.<mac>`, MAC under a second
derived key (`mcpfed token v1`) over issuer, audience and expiry (unix
seconds, `TOKEN_SECONDS` ahead). A peer sends them only to peers that proved
themselves (they are in its table only then), and accepts only those naming
itself as audience and not expired. Relays hold the secret, so they can check
tokens for the peers they proxy. Stock clients keep sending the raw secret
(`membership.MeshGuard` accepts both); only people hand that out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from federation.bodylimit import BodyTooLarge, read_body
from federation.const import PROOF_PATH
from federation.http1 import ConnectionPool, Timeouts, TooLarge
from federation.urls import base_url, serves_at

__all__ = [
    "PROOF_PENDING_LIMIT",
    "PROOF_TTL_SECONDS",
    "TOKEN_SECONDS",
    "MeshKeys",
    "ProofDesk",
    "ProofError",
    "TokenAuth",
    "Tokens",
    "prove",
]

PROOF_TTL_SECONDS = 10.0
"""A responder's nonce is good for this long, once."""

PROOF_PENDING_LIMIT = 1024
"""Challenges a responder remembers at once; past this the oldest are forgotten (a flood costs bounded memory)."""

TOKEN_SECONDS = 300
"""A per-pair token is valid this long; the issuer mints a new one when half of it is gone."""

MAX_PROOF_BODY = 2048
"""A proof message longer than this is refused unread."""

_CLOCK_SKEW_SECONDS = 60
_TOKEN_PREFIX = "mcpfed-t1."
_ID = re.compile(r"[a-z2-7]{16}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_MAC = re.compile(r"[0-9a-f]{64}")
_EXPIRY = re.compile(r"[0-9]{1,12}")
_TOKEN_MAC = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256 MAC, unpadded
_URL = re.compile(r"https?://[\x21-\x7e]{1,256}")
_JSON = [(b"content-type", b"application/json")]


_VERIFIED_KEPT = 4096
"""Verified tokens remembered (`MeshKeys.token_problem`); past that the memory starts over."""


class ProofError(Exception):
    """A proof or token that does not hold; `reason` is a short code for logs and tests."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _derive(secret: str, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret.encode("utf-8"))


class MeshKeys:
    """The two keys derived from a mesh secret: one for proofs, one for tokens."""

    def __init__(self, secret: str) -> None:
        self._proof_key = _derive(secret, b"mcpfed proof v1")
        self._token_key = _derive(secret, b"mcpfed token v1")
        self._verified: dict[tuple[str, str | None], int] = {}
        """Expiry of each (token, audience) that verified: a peer sends one token per peer for minutes, so its
        parse and MAC need not run on every request, only the clock check."""

    def proof(self, role: str, *fields: str) -> str:
        """MAC over the role and the fields (none may hold a newline: every field is pattern-checked first)."""
        return hmac.new(self._proof_key, "\n".join((role, *fields)).encode("utf-8"), hashlib.sha256).hexdigest()

    def token(self, issuer: str, audience: str, *, now: float | None = None) -> str:
        expiry = int((now or time.time()) + TOKEN_SECONDS)
        return f"{_TOKEN_PREFIX}{issuer}.{audience}.{expiry}.{self._token_mac(issuer, audience, expiry)}"

    def _token_mac(self, issuer: str, audience: str, expiry: int) -> str:
        digest = hmac.new(self._token_key, f"{issuer}\n{audience}\n{expiry}".encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def token_problem(self, presented: str, audience: str | None, *, now: float | None = None) -> str | None:
        """Why `presented` is no token for `audience`, or None when it is (right MAC, audience, not expired)."""
        now = now or time.time()
        expiry = self._verified.get((presented, audience))
        if expiry is not None and _fresh(expiry, now):
            return None
        problem = self._check_token(presented, audience, now)
        if problem is None:
            if len(self._verified) >= _VERIFIED_KEPT:
                self._verified.clear()
            self._verified[(presented, audience)] = int(presented.rsplit(".", 2)[1])
        return problem

    def _check_token(self, presented: str, audience: str | None, now: float) -> str | None:
        if not presented.startswith(_TOKEN_PREFIX) or len(presented) > 160:
            return "not_a_token"
        parts = presented[len(_TOKEN_PREFIX) :].split(".")
        if len(parts) != 4 or not (_ID.fullmatch(parts[0]) and _ID.fullmatch(parts[1]) and _EXPIRY.fullmatch(parts[2]) and _TOKEN_MAC.fullmatch(parts[3])):
            return "not_a_token"  # checked to the character: a non-ASCII MAC or a Unicode digit must not reach the arithmetic
        issuer, named, expiry_text, mac = parts
        expiry = int(expiry_text)
        if not hmac.compare_digest(mac.encode("ascii"), self._token_mac(issuer, named, expiry).encode("ascii")):
            return "token_forged"
        if named != audience:
            return "token_other_audience"
        return None if _fresh(expiry, now) else "token_expired"


def _fresh(expiry: int, now: float) -> bool:
    """Not expired, and not valid for longer than a token ever is (a clock far ahead of ours)."""
    return now <= expiry <= now + TOKEN_SECONDS + _CLOCK_SKEW_SECONDS


def token_issuer(presented: str) -> str | None:
    """The issuer named in a peer token, or None for anything else; meaningful only once `token_problem` passed it."""
    if not presented.startswith(_TOKEN_PREFIX):
        return None
    issuer = presented[len(_TOKEN_PREFIX) :].split(".", 1)[0]
    return issuer if _ID.fullmatch(issuer) else None


class Tokens:
    """The tokens one peer (`issuer`) sends: one per audience, minted again when half its life is gone."""

    def __init__(self, keys: MeshKeys, issuer: str) -> None:
        self._keys = keys
        self._issuer = issuer
        self._minted: dict[str, tuple[str, float]] = {}

    def for_peer(self, audience: str) -> str:
        now = time.time()
        token, renew_at = self._minted.get(audience, ("", 0.0))
        if now >= renew_at:
            token = self._keys.token(self._issuer, audience, now=now)
            self._minted[audience] = (token, now + TOKEN_SECONDS / 2)
        return token

    def bearer(self, audience: str) -> str:
        """The Authorization header value for a request to `audience`."""
        return f"Bearer {self.for_peer(audience)}"

    def headers(self, audience: str) -> dict[str, str]:
        return {"Authorization": self.bearer(audience)}


class TokenAuth(httpx2.Auth):
    """httpx2 auth for a long-lived SDK session: each request carries a fresh-enough token for one peer."""

    def __init__(self, tokens: Tokens, audience: str) -> None:
        self._tokens = tokens
        self._audience = audience

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = self._tokens.bearer(self._audience)
        yield request


# -- the responder's side --------------------------------------------------------
@dataclass
class _Pending:
    caller: str
    caller_nonce: str
    to: str
    expires: float


def _field(body: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ProofError("malformed", f"proof message field {key!r} is missing or malformed (expected {pattern.pattern})")
    return value


def _parse(raw: bytes) -> dict[str, Any]:
    """A proof message as a dict; ProofError for one too big or not a JSON object."""
    if len(raw) > MAX_PROOF_BODY:
        raise ProofError("malformed", f"proof message larger than {MAX_PROOF_BODY} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProofError("malformed", "a proof message is a JSON object")
    return body


class ProofDesk:
    """A member's answers to proofs: fresh nonces, a bounded table of pending ones, single use.

    `addresses()` gives the URLs this member serves at (its card's endpoints);
    `card()` the signed card handed to a caller that proved itself.
    """

    def __init__(self, keys: MeshKeys, peer_id: str, addresses: Callable[[], list[str]], card: Callable[[], bytes], *, kind: str = "peer") -> None:
        self._keys = keys
        self._kind = kind
        self._peer_id = peer_id
        self._addresses = addresses
        self._card = card
        self._pending: OrderedDict[str, _Pending] = OrderedDict()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def answer(self, raw: bytes) -> bytes:
        """The JSON answer to one proof message; ProofError says why there is none."""
        body = _parse(raw)
        step = body.get("step")
        if step == "challenge":
            return json.dumps(self._challenge(body)).encode("utf-8")
        if step == "confirm":
            self._confirm(body)
            return self._card()
        raise ProofError("malformed", "proof message 'step' must be 'challenge' or 'confirm'")

    def _challenge(self, body: dict[str, Any]) -> dict[str, Any]:
        caller, caller_nonce, to = _field(body, "caller", _ID), _field(body, "nonce", _NONCE), _field(body, "to", _URL)
        if caller == self._peer_id:
            raise ProofError("reflected", "a challenge naming this peer as its caller (a reflection attempt)")
        now = time.monotonic()
        while self._pending and (len(self._pending) >= PROOF_PENDING_LIMIT or next(iter(self._pending.values())).expires < now):
            self._pending.popitem(last=False)
        nonce = secrets.token_hex(16)
        self._pending[nonce] = _Pending(caller, caller_nonce, to, now + PROOF_TTL_SECONDS)
        addressed = any(serves_at(address, to) for address in self._addresses())
        proof = self._keys.proof("responder", self._kind, self._peer_id, caller, caller_nonce, nonce, to, str(addressed))
        return {"responder": self._peer_id, "nonce": nonce, "addressed": addressed, "proof": proof}

    def _confirm(self, body: dict[str, Any]) -> None:
        caller, nonce, proof = _field(body, "caller", _ID), _field(body, "nonce", _NONCE), _field(body, "proof", _MAC)
        pending = self._pending.pop(nonce, None)
        if pending is None or pending.expires < time.monotonic():
            raise ProofError("stale", "this proof answers no challenge pending here (unknown, used or expired nonce): start again")
        expected = self._keys.proof("caller", self._kind, pending.caller, self._peer_id, pending.caller_nonce, nonce, pending.to)
        if caller != pending.caller or not hmac.compare_digest(proof, expected):
            raise ProofError("wrong-proof", "the caller's proof does not verify: it does not hold this mesh's secret")

    async def endpoint(self, request: Request) -> Response:
        """`POST /mesh/proof`: open to anyone, answers only what the protocol allows; 401 with the reason otherwise."""
        try:
            raw = await read_body(request.scope, request.receive, MAX_PROOF_BODY)
            if raw is None:
                return Response(status_code=400)
            return Response(self.answer(raw), media_type="application/json")
        except BodyTooLarge:
            return _refusal(ProofError("malformed", f"proof message larger than {MAX_PROOF_BODY} bytes"))
        except ProofError as exc:
            return _refusal(exc)


def _refusal(exc: ProofError) -> Response:
    return JSONResponse({"error": {"message": f"membership proof refused: {exc}", "data": {"reason": exc.reason}}}, status_code=401)


# -- the caller's side -------------------------------------------------------------
async def _post(http: ConnectionPool, url: str, message: dict[str, Any], limit: int, timeouts: Timeouts) -> bytes:
    """POST one proof message; the answer body (at most `limit` bytes), ProofError for a refusal."""
    try:
        status, body = await http.fetch(b"POST", url, _JSON, timeouts, limit=limit, body=json.dumps(message).encode("utf-8"))
    except TooLarge as exc:
        raise ProofError("bad-response", f"{url} answered more than {limit} bytes") from exc
    if status != 200:
        raise ProofError("no-proof", f"{url} answered HTTP {status} to a membership proof")
    return body


async def prove(
    http: ConnectionPool,
    url: str,
    *,
    timeouts: Timeouts,
    keys: MeshKeys,
    own_id: str,
    expected_id: str | None,
    check_address: bool,
    card_limit: int,
    kind: str = "peer",
) -> tuple[str, bytes]:
    """Run the proof with the `kind` ("peer" or "relay") at `url`: (its proven id, its card body); ProofError if it is no member.

    Nothing here carries a credential: the caller's own proof goes out only
    after the responder's has verified (and named `expected_id`, and for
    `check_address` this very address). A request that gets no answer raises
    `federation.http1.HttpError` (the caller knows whether that is worth a retry).
    """
    target = base_url(url) + PROOF_PATH
    nonce, to = secrets.token_hex(16), base_url(url)
    answer = _parse(await _post(http, target, {"step": "challenge", "caller": own_id, "nonce": nonce, "to": to}, MAX_PROOF_BODY, timeouts))
    responder, their_nonce, proof = _field(answer, "responder", _ID), _field(answer, "nonce", _NONCE), _field(answer, "proof", _MAC)
    addressed = answer.get("addressed") is True
    if not hmac.compare_digest(proof, keys.proof("responder", kind, responder, own_id, nonce, their_nonce, to, str(addressed))):
        raise ProofError("wrong-proof", f"{url} could not prove it is a {kind} holding this mesh's secret")
    if expected_id is not None and responder != expected_id:
        raise ProofError("spoofed-id", f"announced as peer {expected_id!r} but the member answering at {url} is {responder!r}")
    if check_address and not addressed:
        raise ProofError("address-mismatch", f"member {responder!r} answered through {url}, an address that is not its own (a forwarded challenge)")
    mine = keys.proof("caller", kind, own_id, responder, nonce, their_nonce, to)
    card = await _post(http, target, {"step": "confirm", "caller": own_id, "nonce": their_nonce, "proof": mine}, card_limit, timeouts)
    return responder, card
