"""mDNS TXT records from anyone on the LAN: any record reads as a `Hint` or a `HintError`, never a crash, in bounded memory."""

from __future__ import annotations

import ipaddress
import socket

from hypothesis import given
from hypothesis import strategies as st
from zeroconf.asyncio import AsyncServiceInfo

from federation.const import SERVICE_TYPE
from federation.discovery.hint import Hint, HintError, parse_hint
from tests.support.fuzzing import FUZZ, peak_bytes

KEYS = st.sampled_from([b"id", b"mesh", b"path", b"v", b"cd"]) | st.binary(max_size=8)
VALUES = st.none() | st.binary(max_size=80) | st.from_regex(rb"\A[a-z2-7]{16}\Z") | st.from_regex(rb"\A/[A-Za-z0-9/_.-]{0,63}\Z")
ADDRESSES = st.lists(st.ip_addresses(v=4), max_size=6)


def _info(properties: bytes | dict[bytes, bytes | None], port: int, addresses: list[ipaddress.IPv4Address]) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        SERVICE_TYPE, f"fuzz.{SERVICE_TYPE}", port=port, properties=properties, addresses=[socket.inet_aton(str(a)) for a in addresses]
    )


def _hint_or_error(info: AsyncServiceInfo) -> Hint | None:
    try:
        return parse_hint(info)
    except HintError as exc:
        assert str(exc)
        return None


@FUZZ
@given(text=st.binary(max_size=600), port=st.integers(0, 65535), addresses=ADDRESSES)
def test_any_raw_txt_record_is_a_hint_or_a_hint_error(text: bytes, port: int, addresses: list[ipaddress.IPv4Address]) -> None:
    _hint_or_error(_info(text, port, addresses))


@FUZZ
@given(properties=st.dictionaries(KEYS, VALUES, max_size=8), port=st.integers(0, 65535), addresses=ADDRESSES)
def test_any_txt_properties_are_a_hint_or_a_hint_error(properties: dict[bytes, bytes | None], port: int, addresses: list[ipaddress.IPv4Address]) -> None:
    hint = _hint_or_error(_info(properties, port, addresses))
    if hint is not None:
        assert hint.urls and all(url.startswith("http://") for url in hint.urls)
        assert len(hint.urls) <= 4


def test_a_txt_record_of_the_largest_mdns_size_costs_little_memory() -> None:
    """9000 bytes is the largest mDNS packet (RFC 6762 §17); a TXT record cannot be bigger."""
    text = b"".join(bytes([255]) + b"k%03d=" % i + bytes(250) for i in range(35))[:9000]
    info = _info(text, 8800, [ipaddress.IPv4Address("127.0.0.1")])
    assert peak_bytes(lambda: parse_hint(info), HintError) < 256 << 10
