"""Stamping a forwarded answer with this peer's hop record, without holding the stream back.

The message-level forwarder passes the upstream peer's answer through as
bytes. For the caller to check who served (see `federation.receipt`), the
forwarding peer adds its signed hop record beside the server's receipt, as
the SDK path does in the tool host. In an SSE answer only the event that
carries the JSON-RPC result is rewritten; every other event (progress) goes
on the moment it is complete. A JSON answer is one message anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from federation.receipt import RECEIPT_META_KEY

__all__ = ["ResultStamper"]

_EVENT_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")

MetaStamp = Callable[[dict[str, Any]], dict[str, Any]]
"""Given a forwarded result's `_meta` (which holds another peer's receipt), the `_meta` to send on."""


class ResultStamper:
    """Feed it the upstream's bytes; it returns what to send, with the result message stamped.

    `result` is then the JSON-RPC result as the upstream sent it (before
    stamping), for the ledger: the answer is parsed once, here.
    """

    def __init__(self, stamp: MetaStamp, *, sse: bool) -> None:
        self._stamp = stamp
        self._sse = sse
        self._pending = bytearray()
        self.result: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The complete SSE events in hand (stamped where needed); a JSON body is held until `finish`."""
        self._pending += chunk
        if not self._sse:
            return b""
        out = bytearray()
        while match := _EVENT_END.search(self._pending):
            out += self._event(bytes(self._pending[: match.start()])) + match.group()
            del self._pending[: match.end()]
        return bytes(out)

    def finish(self) -> bytes:
        """Whatever is left: the whole JSON body, or an SSE event the upstream did not terminate."""
        rest, self._pending = bytes(self._pending), bytearray()
        if not rest:
            return b""
        return self._event(rest) if self._sse else self._message(rest)

    def _event(self, event: bytes) -> bytes:
        lines = _LINE_END.split(event)
        data = [i for i, line in enumerate(lines) if line.startswith(b"data:")]
        if len(data) != 1:
            return event
        index = data[0]
        lines[index] = b"data: " + self._message(lines[index][5:].strip())
        return b"\r\n".join(lines) if b"\r\n" in event else b"\n".join(lines)

    def _message(self, raw: bytes) -> bytes:
        try:
            message = json.loads(raw)
        except ValueError:
            return raw
        result = message.get("result") if isinstance(message, dict) else None
        if not isinstance(result, dict):
            return raw
        self.result = dict(result)  # a copy: stamping below replaces `_meta` in the message sent on
        meta = result.get("_meta")
        if not isinstance(meta, dict) or not isinstance(meta.get(RECEIPT_META_KEY), dict):
            return raw
        result["_meta"] = self._stamp(meta)
        return json.dumps(message, separators=(",", ":")).encode()
