"""Membership proofs from anyone on the network: any message gets an answer or a `ProofError`, never a crash, a
token or a card for less than a real proof; the pending table stays bounded; tokens are refused unless minted right."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from federation.proof import MAX_PROOF_BODY, PROOF_PENDING_LIMIT, TOKEN_SECONDS, MeshKeys, ProofDesk, ProofError, token_issuer
from tests.support.fuzzing import FUZZ, JSON, peak_bytes

KEYS = MeshKeys("the-mesh-secret-of-this-fuzz-test")
ME, CALLER = "a" * 16, "b" * 16
CARD = b'{"card": "handed out only after a proof"}'
ID = st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=16, max_size=16)
NONCE = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
MESSAGE = st.fixed_dictionaries(
    {"step": st.sampled_from(["challenge", "confirm"]) | JSON},
    optional={"caller": ID | JSON, "nonce": NONCE | JSON, "to": st.just("http://127.0.0.1:1/mcp") | JSON, "proof": st.text(max_size=70) | JSON},
)


def _desk() -> ProofDesk:
    return ProofDesk(KEYS, ME, lambda: ["http://127.0.0.1:1/mcp"], lambda: CARD)


def _answer(desk: ProofDesk, raw: bytes) -> bytes | None:
    try:
        return desk.answer(raw)
    except ProofError as exc:
        assert exc.reason and str(exc)
        return None


@FUZZ
@given(raw=st.binary(max_size=MAX_PROOF_BODY + 16) | MESSAGE.map(lambda m: json.dumps(m).encode()))
def test_any_message_is_answered_or_refused_and_never_hands_out_the_card(raw: bytes) -> None:
    answer = _answer(_desk(), raw)
    assert answer != CARD, "a card (with the rest of the mesh behind it) only after a caller's proof that verifies"


@FUZZ
@given(caller=ID, nonce=NONCE, proof=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_a_guessed_confirmation_of_a_real_challenge_is_refused(caller: str, nonce: str, proof: str) -> None:
    desk = _desk()
    challenge = json.loads(desk.answer(json.dumps({"step": "challenge", "caller": caller, "nonce": nonce, "to": "http://127.0.0.1:1/mcp"}).encode()))
    confirm: dict[str, Any] = {"step": "confirm", "caller": caller, "nonce": challenge["nonce"], "proof": proof}
    assert _answer(desk, json.dumps(confirm).encode()) is None
    assert _answer(desk, json.dumps(confirm).encode()) is None, "and the challenge is used up"


def test_a_flood_of_challenges_keeps_the_pending_table_bounded() -> None:
    desk = _desk()
    for index in range(PROOF_PENDING_LIMIT * 3):
        desk.answer(json.dumps({"step": "challenge", "caller": CALLER, "nonce": f"{index:032x}", "to": "http://127.0.0.1:1/mcp"}).encode())
    assert desk.pending <= PROOF_PENDING_LIMIT


def test_the_largest_message_costs_bounded_memory() -> None:
    raw = json.dumps({"step": "challenge", "caller": CALLER, "nonce": "0" * 32, "to": "x" * (MAX_PROOF_BODY - 80)}).encode()
    assert peak_bytes(lambda: _desk().answer(raw), ProofError) < 64 * MAX_PROOF_BODY


@FUZZ
@given(presented=st.text(max_size=200) | st.builds(lambda a, b, e, m: f"mcpfed-t1.{a}.{b}.{e}.{m}", ID, ID, st.integers(0, 10**13), st.text(max_size=44)))
def test_only_a_token_minted_with_the_mesh_keys_passes(presented: str) -> None:
    assert KEYS.token_problem(presented, ME) is not None
    issuer = token_issuer(presented)
    assert issuer is None or len(issuer) == 16


@FUZZ
@given(issuer=ID, audience=ID)
def test_a_minted_token_passes_only_at_its_audience_and_names_its_issuer(issuer: str, audience: str) -> None:
    token = KEYS.token(issuer, audience)
    assert KEYS.token_problem(token, audience) is None and token_issuer(token) == issuer
    assert KEYS.token_problem(token, ME if audience != ME else CALLER) == "token_other_audience"
    assert MeshKeys("another-mesh-secret-entirely").token_problem(token, audience) == "token_forged"


def test_a_token_that_verified_once_is_still_refused_once_expired_or_elsewhere() -> None:
    keys = MeshKeys("the-mesh-secret-of-a-remembering-test")
    token = keys.token(CALLER, ME, now=1_000_000)
    assert keys.token_problem(token, ME, now=1_000_001) is None
    assert keys.token_problem(token, ME, now=1_000_002) is None, "remembered"
    assert keys.token_problem(token, CALLER, now=1_000_002) == "token_other_audience"
    assert keys.token_problem(token, ME, now=1_000_000 + TOKEN_SECONDS + 1) == "token_expired"
    assert keys.token_problem(token, ME, now=1_000_000 - TOKEN_SECONDS) == "token_expired", "not valid that far ahead of the clock"
