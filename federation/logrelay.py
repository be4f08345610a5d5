"""A forwarded call's log messages, back to whoever made the call.

A handshake-era client hears a server's log messages
(`notifications/message`) on its session; a 2026-era client opts in per
request (`_meta["io.modelcontextprotocol/logLevel"]`) and they ride that
request's answer. A call forwarded at the message level passes the upstream
answer through as it is, log messages included. A call forwarded over a
pooled SDK session cannot: the SDK hands all of a session's log messages to
one callback without saying which request each belongs to.

So every peer stamps the log messages of the calls it serves with the call's
trace id (`_meta[TRACE_ID_META_KEY]`, see `stamped`), asks for log messages
on the calls it forwards for a caller who wants them (`wanted_level`), and
`LogRoutes` hands each stamped message that comes back to the caller of the
call with that trace, who gets it stamped in turn (`send_log`). The trace id,
not the span: a hop that forwards at the message level passes the log
messages through unchanged, stamped by the peer beyond it, and only the trace
id is the same at both ends. A message without a known trace goes nowhere:
one caller's logs never reach another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import mcp.types as types
from mcp.client.session import LoggingFnT
from mcp.server import ServerRequestContext
from mcp.server.connection import allowed_log_levels

from federation.trace import Trace

__all__ = ["TRACE_ID_META_KEY", "LogRelay", "LogRoutes", "LogWish", "relay_to", "send_log", "stamped", "wanted_level"]

TRACE_ID_META_KEY = "io.mcp-federation/trace"
_LEVELS: tuple[types.LoggingLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

LogRelay = LoggingFnT
"""Where log messages go: `async (params: LoggingMessageNotificationParams) -> None`."""


def wanted_level(ctx: ServerRequestContext[Any]) -> types.LoggingLevel | None:
    """The lowest level the caller of `ctx` takes (every level in the handshake era), or None if it wants no log messages."""
    allowed = allowed_log_levels(ctx.protocol_version, ctx.meta)
    return next((level for level in _LEVELS if level in allowed), None)


async def send_log(ctx: ServerRequestContext[Any], level: types.LoggingLevel, data: Any, logger: str | None = None) -> None:
    """A log message to the caller of `ctx`, on its request's stream, stamped with its trace id, if it takes that level."""
    if level not in allowed_log_levels(ctx.protocol_version, ctx.meta):
        return
    trace_id = Trace.from_meta(dict(ctx.meta or {})).trace_id
    params = types.LoggingMessageNotificationParams(level=level, data=data, logger=logger, _meta={TRACE_ID_META_KEY: trace_id})
    await ctx.session.send_notification(types.LoggingMessageNotification(params=params), related_request_id=ctx.request_id)


@dataclass(frozen=True)
class LogWish:
    """A caller's wish for a forwarded call's log messages: from which level, and where they go."""

    level: types.LoggingLevel
    relay: LogRelay


def relay_to(ctx: ServerRequestContext[Any]) -> LogWish | None:
    """What a call forwarded for `ctx` asks for and where its log messages go; None when its caller wants none."""
    level = wanted_level(ctx)
    if level is None:
        return None

    async def relay(params: types.LoggingMessageNotificationParams) -> None:
        await send_log(ctx, params.level, params.data, params.logger)

    return LogWish(level, relay)


class _StampingSession:
    """The caller's session, with log messages sent through `send_log` (everything else as it was)."""

    def __init__(self, ctx: ServerRequestContext[Any]) -> None:
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx.session, name)

    async def send_log_message(self, level: types.LoggingLevel, data: Any, logger: str | None = None, related_request_id: Any = None) -> None:
        await send_log(self._ctx, level, data, logger)


def stamped(ctx: ServerRequestContext[Any]) -> ServerRequestContext[Any]:
    """`ctx` for a hosted server: its log messages go out stamped with the call's trace id."""
    return replace(ctx, session=_StampingSession(ctx))  # type: ignore[arg-type]


class LogRoutes:
    """Which caller each forwarded call's log messages go to, by the call's trace id.

    Calls of one trace in flight at once (a fan-out) were all made for the
    same caller: any of their relays reaches it.
    """

    def __init__(self) -> None:
        self._routes: dict[str, list[LogRelay]] = {}

    @contextmanager
    def route(self, trace_id: str, relay: LogRelay) -> Iterator[None]:
        self._routes.setdefault(trace_id, []).append(relay)
        try:
            yield
        finally:
            relays = self._routes[trace_id]
            relays.remove(relay)
            if not relays:
                del self._routes[trace_id]

    async def deliver(self, params: types.LoggingMessageNotificationParams) -> None:
        """A pooled session's log message, to the caller of the call whose trace it carries (else dropped)."""
        trace_id = (params.meta or {}).get(TRACE_ID_META_KEY)
        relays = self._routes.get(trace_id) if isinstance(trace_id, str) else None
        relay = relays[0] if relays else None
        if relay is not None:
            await relay(params)
