"""Liveness news as pings carry it: what a hearer accepts from an unauthenticated header or reply."""

from __future__ import annotations

from federation.discovery.rumours import Rumours, decode_news, encode_news


def test_news_round_trips_through_a_header_and_a_reply() -> None:
    rumours = Rumours(ttl=60)
    rumours.tell("aaaa", "suspect")
    rumours.tell("bbbb", "dead")
    rumours.tell("aaaa", "up")  # a newer word on the same peer replaces the old one
    news = rumours.news()
    assert news == [("up", "aaaa"), ("dead", "bbbb")]
    assert decode_news(" ".join(encode_news(news))) == decode_news(encode_news(news)) == news


def test_malformed_news_is_skipped_and_a_flood_is_capped() -> None:
    assert decode_news("alive:aaaa dead: dead:a/b dead:" + "x" * 65 + " suspect:cccc") == [("suspect", "cccc")]
    assert decode_news([1, None, "dead:dddd"]) == [("dead", "dddd")]
    assert decode_news({"dead": "eeee"}) == []
    assert len(decode_news(" ".join(f"dead:p{i}" for i in range(1000)))) == 8
