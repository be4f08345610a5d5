"""The relay's `/peers` body, built once per change and tagged, so an unchanged directory costs a 304.

Every attached peer reads `/peers` every few seconds: N peers reading N cards
is O(N²) bytes at the relay, and each reader verified every card's signature
again. The body is rebuilt only when the set of cards changes (a card is
known by its id and signature: a re-signed card is a new one), and carries
an `ETag`; a reader that sends it back as `If-None-Match` gets `304 Not
Modified` and keeps what it verified last time. Readers that send nothing
get the full body as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from federation.relay.received import ReceivedCard

__all__ = ["PeersListing"]


class PeersListing:
    """The last `/peers` body and its ETag, remade when the cards listed change."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._body = b""
        self._etag = ""

    def respond(self, request: Request, relay: str, mesh: str | None, here: Sequence[ReceivedCard], elsewhere: Sequence[tuple[ReceivedCard, str]]) -> Response:
        """The full listing, or 304 when the reader already has it; each card as its peer sent it (unknown fields too)."""
        key = (relay, mesh, tuple((c.id, c.signature) for c, _ in here), tuple((c.id, c.signature, url) for (c, _), url in elsewhere))
        if key != self._key:
            peers = [{"card": raw, "relay": relay, "here": True} for _, raw in here]
            peers += [{"card": raw, "relay": url, "here": False} for (_, raw), url in elsewhere]
            self._body = json.dumps({"relay": relay, "mesh": mesh, "peers": peers}).encode()
            self._etag = '"' + hashlib.sha256(self._body).hexdigest()[:20] + '"'
            self._key = key
        headers = {"ETag": self._etag}
        if request.headers.get("if-none-match") == self._etag:
            return Response(status_code=304, headers=headers)
        return Response(self._body, media_type="application/json", headers=headers)
