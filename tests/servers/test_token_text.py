"""Streaming generated text: never half a character, never any part of a stop string."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from servers.token_text import TokenText


def stream(pieces: list[bytes], stop: list[str]) -> tuple[list[str], TokenText]:
    text = TokenText(stop)
    out = [text.push(piece) for piece in pieces]
    return [*out, text.flush()], text


def test_a_character_split_across_tokens_is_sent_whole() -> None:
    snow = "雪".encode()  # three bytes, as a tokenizer may split it
    out, _ = stream([b"a", snow[:1], snow[1:2], snow[2:], b"b"], [])
    assert out == ["a", "", "", "雪", "b", ""]


def test_text_that_may_begin_a_stop_string_waits_until_it_cannot() -> None:
    out, text = stream([b"one <", b"en", b"d> two"], ["<end>"])
    assert out == ["one ", "", "", ""]
    assert text.stopped


def test_held_text_is_released_when_it_turns_out_not_to_be_a_stop() -> None:
    out, text = stream([b"a <", b"b"], ["<end>"])
    assert out == ["a ", "<b", ""]
    assert not text.stopped


def test_held_text_comes_out_on_flush_when_generation_ends() -> None:
    out, _ = stream([b"x <en"], ["<end>"])
    assert out == ["x ", "<en"]


def test_nothing_is_sent_after_a_stop() -> None:
    text = TokenText(["."])
    assert text.push(b"Hi. More") == "Hi"
    assert text.push(b" text") == ""
    assert text.flush() == ""


def test_the_earliest_of_several_stop_strings_wins() -> None:
    out, _ = stream([b"a END b STOP"], ["STOP", "END"])
    assert out[0] == "a "


@given(text=st.text(), stop=st.lists(st.text(min_size=1, max_size=4), max_size=3), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_streamed_pieces_join_to_the_text_before_the_first_stop(text: str, stop: list[str], cuts: list[int]) -> None:
    raw = text.encode()
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    pieces = [raw[a:b] for a, b in itertools.pairwise(points)]
    out, _ = stream(pieces, stop)
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    assert "".join(out) == (text[: min(ends)] if ends else text)
