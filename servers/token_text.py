"""Turning generated tokens into text that is safe to stream.

Why this exists: a token is a few bytes, not always a whole character (CJK,
emoji and Arabic often span two or three tokens), and a stop string may be
split across tokens. Streaming a token's bytes as they come would send broken
characters, or the first half of a stop string the caller asked never to
see. `TokenText` holds back exactly what could still turn out that way and
releases everything else at once, so the streamed pieces always join to the
final text.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

__all__ = ["TokenText"]


class TokenText:
    """Bytes of tokens in, streamable text out; `stopped` once a stop string appears."""

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._stop = [s for s in stop if s]
        self._pending = ""
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that can be streamed now ("" when held back)."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(piece)
        found = [i for i in (self._pending.find(s) for s in self._stop) if i >= 0]
        if found:
            text, self._pending, self.stopped = self._pending[: min(found)], "", True
            return text
        keep = self._stop_prefix_length()
        cut = len(self._pending) - keep
        text, self._pending = self._pending[:cut], self._pending[cut:]
        return text

    def flush(self) -> str:
        """What was held back, once generation ended without a stop string."""
        if self.stopped:
            return ""
        text, self._pending = self._pending + self._decoder.decode(b"", final=True), ""
        return text

    def _stop_prefix_length(self) -> int:
        """Length of the longest tail of the pending text that begins some stop string."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:size]):
                    longest = size
                    break
        return longest
