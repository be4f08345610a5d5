"""Trace context carried in request `_meta` from hop to hop.

Every call through the mesh carries `{"trace_id", "span_id", "parent", "hop",
"visited", "caller", "deadline_s"}` under `TRACE_META_KEY`. A peer that finds
itself in `visited`, or a hop count over the limit, refuses the call: that is
the loop guard. `deadline_s` is the time the caller has left, so each hop
forwards with what remains rather than a fresh timeout.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from federation.const import TRACE_META_KEY

__all__ = ["LoopError", "Trace"]

DEFAULT_MAX_HOPS = 4
DEFAULT_DEADLINE_S = 300.0


def _new_id() -> str:
    return secrets.token_hex(8)


class LoopError(Exception):
    """The call would loop or has gone through too many peers."""


@dataclass
class Trace:
    trace_id: str = field(default_factory=_new_id)
    span_id: str = field(default_factory=_new_id)
    parent: str | None = None
    hop: int = 0
    visited: list[str] = field(default_factory=list)
    caller: str | None = None
    deadline_s: float = DEFAULT_DEADLINE_S
    received_at: float = field(default_factory=time.monotonic)

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> Trace:
        raw = (meta or {}).get(TRACE_META_KEY) or {}
        if not isinstance(raw, dict):
            return cls()
        try:
            return cls(
                trace_id=str(raw.get("trace_id") or _new_id()),
                span_id=str(raw.get("span_id") or _new_id()),
                parent=raw.get("parent"),
                hop=int(raw.get("hop", 0)),
                visited=[str(v) for v in raw.get("visited", [])][:64],
                caller=raw.get("caller"),
                deadline_s=float(raw.get("deadline_s", DEFAULT_DEADLINE_S)),
            )
        except (TypeError, ValueError):
            return cls()

    def remaining_s(self) -> float:
        return self.deadline_s - (time.monotonic() - self.received_at)

    def check(self, self_id: str, max_hops: int = DEFAULT_MAX_HOPS) -> None:
        if self_id in self.visited:
            path = " -> ".join([*self.visited, self_id])
            raise LoopError(f"refused: this call already passed through this peer ({path}); it would loop.")
        if self.hop > max_hops:
            raise LoopError(f"refused: the call has made {self.hop} hops, over the limit of {max_hops}.")

    def as_meta(self) -> dict[str, Any]:
        """This span as request `_meta`: `from_meta` reads it back as the same trace."""
        fields = {"trace_id": self.trace_id, "span_id": self.span_id, "parent": self.parent, "hop": self.hop, "visited": list(self.visited)}
        return {TRACE_META_KEY: fields | {"caller": self.caller, "deadline_s": max(0.0, self.remaining_s())}}

    def child_meta(self, self_id: str, *, local: bool = False) -> dict[str, Any]:
        """`_meta` for a call this peer makes on behalf of this one.

        `local=True` for a call this peer serves itself (its own model): a new
        span, but no hop, so the loop guard does not see this peer twice.
        """
        return {
            TRACE_META_KEY: {
                "trace_id": self.trace_id,
                "span_id": _new_id(),
                "parent": self.span_id,
                "hop": self.hop if local else self.hop + 1,
                "visited": list(self.visited) if local else [*self.visited, self_id],
                "caller": self_id,
                "deadline_s": max(0.0, self.remaining_s()),
            }
        }
