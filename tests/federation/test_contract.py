"""The contract a peer speaks: one model per event kind, one peer row, checked where they are made."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from federation import CallFinished, PeerCard, PeerDown, PeerRow, PeerUp, parse_event
from federation.contract import EVENT_MODELS
from federation.events import EventBus
from federation.peers import PeerTable

CARD = PeerCard(id="alicealicealice1", name="alice", pubkey="", mesh="home")


def test_every_event_kind_has_one_model() -> None:
    assert sorted(EVENT_MODELS) == sorted(["hello", "peer_up", "peer_down", "peer_suspect", "peer_changed", "call_started", "call_finished", "dropped"])
    assert all(model.kind == kind for kind, model in EVENT_MODELS.items())


def test_publishing_validates_the_fields_against_the_kinds_model() -> None:
    bus = EventBus()
    event = bus.publish("call_finished", tool="chat", callee="b", ms=1.5, outcome="ok", tokens_out=3)
    assert isinstance(event.payload, CallFinished) and event.payload.tokens_out == 3
    with pytest.raises(TypeError, match="no field"):
        bus.publish("call_finished", tool="chat", outcome="ok", tokens=3)  # a misspelt field fails here, not in a watcher
    with pytest.raises(ValidationError):
        bus.publish("call_finished", tool="chat")  # no outcome


def test_an_events_json_reads_back_as_the_same_model() -> None:
    event = EventBus().publish("peer_down", reason="forgotten", **dict(PeerRow.from_card(CARD, latency_ms=None, last_seen=1.0, via="mdns")))
    again = parse_event(event.kind, event.payload.model_dump_json())
    assert isinstance(again, PeerDown) and again == event.payload and again.removed


def test_readers_ignore_what_they_do_not_know_and_refuse_what_is_malformed() -> None:
    assert isinstance(parse_event("peer_up", '{"id": "x", "name": "y", "via": "mdns", "from_the_future": 1}'), PeerUp)
    assert parse_event("peer_up", '{"name": "no id"}') is None
    assert parse_event("router_mood", "{}") is None


@pytest.mark.anyio
async def test_the_peer_table_serves_and_publishes_the_same_row() -> None:
    bus = EventBus()
    table = PeerTable(bus, self_id="me")
    async with bus.subscribe() as events:
        table.admit(CARD, "static", "http://127.0.0.1:9/mcp")
        published = (await anext(events)).payload
    (row,) = table.snapshot()
    assert (row.id, row.name, row.via, row.mesh, row.tools, row.status) == (CARD.id, "alice", "static", "home", 0, "up")
    assert isinstance(published, PeerUp) and PeerRow.model_validate(published.model_dump(exclude={"at"})) == row
