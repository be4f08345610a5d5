"""Membership is proven, never shown: strangers on the LAN get no secret, no token, no place in the table.

Real members (mDNS on loopback, a mesh with a secret) against real
attackers: an HTTP server that logs everything it receives, announced over
mDNS the way anyone on a LAN can. Each test asserts on that log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from starlette.responses import Response

from federation.client import connect
from federation.const import PROOF_PATH
from federation.discovery.admission import CARD_TIMEOUTS
from federation.discovery.hint import txt_record
from federation.http1 import ConnectionPool
from federation.identity import Identity
from federation.node import Node
from federation.peers import PeerTable
from federation.proof import MeshKeys, ProofError, prove
from tests.support.hostile import Announcer, Received, attacker, rejections, signed_card
from tests.support.paths import NOTES
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

SECRET = "proof-test-secret-0123456789abcdef"
RAW = {"Authorization": f"Bearer {SECRET}"}
StartNode = Callable[..., AbstractAsyncContextManager[Node]]


@pytest.fixture(autouse=True)
def _log_discovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="federation.discovery")


@pytest.fixture
def member(mdns_node: StartNode) -> StartNode:
    """A peer of this test's mesh, holding its secret."""

    def start(**overrides: Any) -> AbstractAsyncContextManager[Node]:
        return mdns_node(mesh_secret=SECRET, **overrides)

    return start


def ids(table: PeerTable) -> set[str]:
    return {peer.id for peer in table}


async def listed_everywhere(node: Node) -> set[str]:
    """Peer ids the node shows: its table, `/peers` and the `mesh_peers` tool."""
    async with httpx.AsyncClient(headers=RAW) as http:
        served = {row["id"] for row in (await http.get(node.url + "/peers")).json()["peers"]}
    async with connect(node.mcp_url, headers=RAW) as client:
        result = await client.call_tool("mesh_peers", {})
    tool = {row["id"] for row in (result.structured_content or {}).get("result", [])}
    return ids(node.peers) | served | tool


async def test_members_prove_themselves_and_call_each_other_with_tokens_not_the_secret(member: StartNode) -> None:
    async with member(name="guard") as guard, member(name="victim", notes=NOTES) as victim:
        await wait_until(lambda: victim.peer_id in guard.peers and guard.peer_id in victim.peers, "the two members admitted each other")
        async with connect(guard.mcp_url, headers=RAW) as client:  # a stock client with the raw secret, as a user configures it

            async def listed() -> bool:  # over the guard's session with the victim, which carries a peer token
                return "victim__search_notes" in {tool.name for tool in (await client.list_tools()).tools}

            await wait_until(listed, "the victim's tools listed by the guard")
            found = await client.call_tool("victim__search_notes", {"query": "relay"})
            assert not found.is_error and found.structured_content and found.structured_content["hits"]
        keys = MeshKeys(SECRET)
        async with httpx.AsyncClient() as http:
            for_guard = {"Authorization": f"Bearer {keys.token(guard.peer_id, victim.peer_id)}"}
            assert (await http.get(victim.url + "/peer", headers=for_guard)).status_code == 200
            for_other = {"Authorization": f"Bearer {keys.token(victim.peer_id, guard.peer_id)}"}
            refused = await http.get(victim.url + "/peer", headers=for_other)
            assert refused.status_code == 401 and "addressed to another peer" in refused.json()["error"]["message"]
            expired = {"Authorization": f"Bearer {keys.token(guard.peer_id, victim.peer_id, now=1_000_000)}"}
            refused = await http.get(victim.url + "/peer", headers=expired)
            assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]
            forged = {"Authorization": f"Bearer {MeshKeys('another-secret-entirely').token(guard.peer_id, victim.peer_id)}"}
            refused = await http.get(victim.url + "/peer", headers=forged)
            assert refused.status_code == 401 and "not made with this mesh's secret" in refused.json()["error"]["message"]


async def test_a_stranger_copying_a_members_txt_record_gets_no_credential_and_no_place(
    member: StartNode, announcer: Announcer, caplog: pytest.LogCaptureFixture
) -> None:
    async with member(name="guard") as guard, member(name="victim", mdns="off") as victim, attacker() as stranger:
        copied = txt_record(victim.card(), "/mcp")  # the victim's id and our mesh tag, as heard on the LAN
        names = {
            await announcer.announce("copycat", stranger.port, copied),
            await announcer.announce("newcomer", stranger.port, copied | {"id": Identity.generate().peer_id}),
        }
        await wait_until(lambda: names <= {name for name, _ in rejections(caplog)}, "both announcements turned away")
        assert {reason for name, reason in rejections(caplog) if name in names} == {"no-proof"}
        async with member(name="friend") as friend:
            await wait_until(lambda: friend.peer_id in guard.peers, "an honest member still admitted")
            await wait_until(lambda: len(stranger.received) >= 2, "the stranger was asked to prove itself")
            assert await listed_everywhere(guard) == {friend.peer_id}
    assert {(seen.method, seen.path) for seen in stranger.received} == {("POST", PROOF_PATH)}
    stranger.assert_got_no_credential(SECRET)


async def test_a_validly_signed_card_naming_our_mesh_is_not_membership(member: StartNode, announcer: Announcer, mesh: str, caplog: pytest.LogCaptureFixture) -> None:
    impostor = Identity.generate()

    async def serve_the_card(received: Received) -> Response:  # a card, signed by its own fresh key, for our mesh id
        card = signed_card(impostor, mesh=mesh, endpoint=stranger.url + "/mcp")
        return Response(card.model_dump_json(), media_type="application/json")

    async with member(name="guard") as guard, attacker(serve_the_card) as stranger:
        name = await announcer.announce("signed", stranger.port, txt_record(signed_card(impostor, mesh=mesh, endpoint=stranger.url + "/mcp"), "/mcp"))
        await wait_until(lambda: any(n == name for n, _ in rejections(caplog)), "the signed card turned away")
        assert impostor.peer_id not in guard.peers and await listed_everywhere(guard) == set()
        async with httpx.AsyncClient() as http:  # nor may it post the card to a member, or fetch anything but /health and the proof
            assert (await http.post(guard.url + PROOF_PATH, content=signed_card(impostor, mesh=mesh, endpoint="http://x:1/mcp").model_dump_json())).status_code == 401
            for path in ("/peer", "/peers", "/mcp", "/events"):
                assert (await http.get(guard.url + path)).status_code == 401, path
    stranger.assert_got_no_credential(SECRET)


async def test_a_replayed_proof_fails_both_ways(member: StartNode, announcer: Announcer, caplog: pytest.LogCaptureFixture) -> None:
    async with member(name="guard") as guard, member(name="victim", mdns="off") as victim, httpx.AsyncClient() as http:
        # An old answer of the victim's, recorded by a stranger who challenged it in the guard's name...
        challenge = {"step": "challenge", "caller": guard.peer_id, "nonce": "0" * 32, "to": victim.url}
        recorded = (await http.post(victim.url + PROOF_PATH, json=challenge)).content

        async def replay(received: Received) -> Response:
            return Response(recorded, media_type="application/json")

        # ...replayed to the guard by a stranger posing as the victim (its address is the stranger's).
        async with attacker(replay) as stranger:
            name = await announcer.announce("replayer", stranger.port, txt_record(victim.card(), "/mcp"))
            await wait_until(lambda: (name, "wrong-proof") in rejections(caplog), "the replayed proof refused")
            assert ids(guard.peers) == set()
        stranger.assert_got_no_credential(SECRET)

        # A genuine caller proof, replayed to the member it was made for, is refused: its nonce was used.
        confirms: list[bytes] = []

        class Recording(ConnectionPool):
            async def fetch(self, *args: Any, body: bytes = b"", **kwargs: Any) -> tuple[int, bytes]:
                if b'"confirm"' in body:
                    confirms.append(body)
                return await super().fetch(*args, body=body, **kwargs)

        async with Recording(max_per_origin=1, max_idle_per_origin=1, keepalive_expiry=5) as recording:
            proven, _ = await prove(
                recording, victim.url, timeouts=CARD_TIMEOUTS, keys=MeshKeys(SECRET), own_id=guard.peer_id, expected_id=victim.peer_id, check_address=True, card_limit=1 << 20
            )
        assert proven == victim.peer_id and len(confirms) == 1
        again = await http.post(victim.url + PROOF_PATH, content=confirms[0], headers={"content-type": "application/json"})
        assert again.status_code == 401 and again.json()["error"]["data"]["reason"] == "stale"


async def test_a_forwarded_or_reflected_challenge_admits_nobody(member: StartNode, announcer: Announcer, caplog: pytest.LogCaptureFixture) -> None:
    async with member(name="guard") as guard, member(name="victim", mdns="off") as victim, httpx.AsyncClient() as http:

        async def forward_to_victim(received: Received) -> Response:  # a relay: pass the guard's challenge to the real member
            answer = await http.post(victim.url + PROOF_PATH, content=received.body, headers={"content-type": "application/json"})
            return Response(answer.content, status_code=answer.status_code, media_type="application/json")

        async def reflect_to_guard(received: Received) -> Response:  # a mirror: pass it back to the guard itself
            answer = await http.post(guard.url + PROOF_PATH, content=received.body, headers={"content-type": "application/json"})
            return Response(answer.content, status_code=answer.status_code, media_type="application/json")

        async with attacker(forward_to_victim) as relay, attacker(reflect_to_guard) as mirror:
            relayed = await announcer.announce("relayer", relay.port, txt_record(victim.card(), "/mcp"))
            mirrored = await announcer.announce("mirror", mirror.port, txt_record(signed_card(Identity.generate(), mesh=victim.settings.mesh, endpoint=mirror.url), "/mcp"))
            await wait_until(lambda: (relayed, "address-mismatch") in rejections(caplog), "the forwarded challenge caught")
            await wait_until(lambda: (mirrored, "no-proof") in rejections(caplog), "the reflected challenge refused")
            assert ids(guard.peers) == set() and await listed_everywhere(guard) == set()
        for stranger in (relay, mirror):
            assert stranger.received, "the stranger was challenged"
            stranger.assert_got_no_credential(SECRET)
        reflected = await http.post(guard.url + PROOF_PATH, json={"step": "challenge", "caller": guard.peer_id, "nonce": "1" * 32, "to": guard.url})
        assert reflected.status_code == 401 and reflected.json()["error"]["data"]["reason"] == "reflected"


async def test_proof_messages_are_bounded_and_checked(member: StartNode) -> None:
    async with member(name="guard", mdns="off") as guard, httpx.AsyncClient() as http:
        url = guard.url + PROOF_PATH
        bad = [
            b"x" * 4096,
            b"[1, 2]",
            json.dumps({"step": "challenge", "caller": "A" * 16, "nonce": "0" * 32, "to": guard.url}).encode(),
            json.dumps({"step": "challenge", "caller": "a" * 16, "nonce": "0" * 31, "to": guard.url}).encode(),
            json.dumps({"step": "challenge", "caller": "a" * 16, "nonce": "0" * 32, "to": "http://" + "h" * 300}).encode(),
            json.dumps({"step": "confirm", "caller": "a" * 16, "nonce": "0" * 32, "proof": "0" * 64}).encode(),
            json.dumps({"step": "dance"}).encode(),
        ]
        for body in bad:
            refused = await http.post(url, content=body, headers={"content-type": "application/json"})
            assert refused.status_code == 401 and "membership proof refused" in refused.json()["error"]["message"], body[:80]


def test_the_pending_table_is_bounded_and_nonces_are_single_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from federation.proof import ProofDesk

    monkeypatch.setattr("federation.proof.PROOF_PENDING_LIMIT", 8)
    keys, me, caller = MeshKeys(SECRET), Identity.generate().peer_id, Identity.generate().peer_id
    desk = ProofDesk(keys, me, lambda: ["http://127.0.0.1:1"], lambda: b"{}")
    answers = [json.loads(desk.answer(json.dumps({"step": "challenge", "caller": caller, "nonce": f"{i:032x}", "to": "http://127.0.0.1:1"}).encode())) for i in range(50)]
    assert desk.pending == 8
    last = answers[-1]
    confirm = {"step": "confirm", "caller": caller, "nonce": last["nonce"], "proof": keys.proof("caller", "peer", caller, me, f"{49:032x}", last["nonce"], "http://127.0.0.1:1")}
    assert desk.answer(json.dumps(confirm).encode()) == b"{}"
    with pytest.raises(ProofError, match="no challenge pending"):
        desk.answer(json.dumps(confirm).encode())
    oldest = answers[0]
    with pytest.raises(ProofError, match="no challenge pending"):  # forgotten to make room
        desk.answer(json.dumps(confirm | {"nonce": oldest["nonce"]}).encode())
