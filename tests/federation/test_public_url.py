"""`--public-url`: what a peer in a container (or behind a proxy) advertises first, and a name requests may be addressed to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from federation.const import HEALTH_PATH, MCP_PATH
from federation.node import Node
from federation.settings import PeerSettings

pytestmark = pytest.mark.anyio


async def test_a_peer_advertises_its_public_url_first_and_answers_to_its_name(make_settings: Callable[..., PeerSettings]) -> None:
    async with Node(make_settings(public_url="http://mesh.example.test:8802/")) as node:
        card = node.card()
        async with httpx.AsyncClient() as http:
            named = await http.get(f"http://127.0.0.1:{node.port}{HEALTH_PATH}", headers={"Host": "mesh.example.test:8802"})
            other = await http.get(f"http://127.0.0.1:{node.port}{HEALTH_PATH}", headers={"Host": "elsewhere.example.test"})
    assert card.endpoints[0] == "http://mesh.example.test:8802" + MCP_PATH
    assert f"http://127.0.0.1:{node.port}{MCP_PATH}" in card.endpoints, "the bound address stays, for whoever reaches it directly"
    assert (named.status_code, other.status_code) == (200, 421)


@pytest.mark.parametrize("value", ["ftp://x", "mesh.example.test:8801", "http://"])
def test_a_public_url_that_is_not_a_base_url_is_one_clear_error(value: str, make_settings: Callable[..., Any]) -> None:
    from federation.errors import ConfigError

    with pytest.raises(ConfigError, match=r"public_url=.* is not allowed: give the base URL others reach this at"):
        make_settings(public_url=value)
