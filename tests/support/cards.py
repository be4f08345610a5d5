"""Cards as a newer version would sign them: fields this version does not know, at the top and inside a model."""

from __future__ import annotations

import base64
import json
from typing import Any

from federation.card import PeerCard, _signed_bytes
from federation.identity import Identity


def future_card(card: PeerCard, identity: Identity) -> dict[str, Any]:
    """`card`'s JSON plus a field at the top and one in its first model (it needs one), signed as a newer version signs it."""
    body = json.loads(card.model_dump_json())
    body["future_field"] = {"x": 1}
    body["models"][0]["future_nested"] = "y"
    return resign(body, identity)


def resign(body: dict[str, Any], identity: Identity) -> dict[str, Any]:
    """`body` with a genuine signature over its canonical bytes, whatever fields it has."""
    return body | {"signature": base64.b64encode(identity.sign(_signed_bytes(body))).decode("ascii")}
