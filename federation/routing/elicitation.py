"""Questions a tool on another peer asks the user, carried back to the user's client (elicitation across the mesh).

Between peers a question always travels the 2026-07-28 way: the tool answers
its call with an `input_required` round (its questions and its sealed
`requestState`), and the call is retried with the answers. What the
forwarding peer does with a round depends on who called it:

- a 2026-07-28 caller gets the round as it is; its client asks the user and
  retries, and the retry carries the answers and the state down unchanged
  (only the peer that sealed the state can open it);
- a 2025-11-25 caller (a handshake session: Claude Desktop, Gemini CLI, the
  stdio gateway) is asked here, over its own session, as `elicitation/create`
  (or `sampling/createMessage`, `roots/list`); this peer retries with the
  answers until the tool answers. A question the user leaves unanswered is
  withdrawn shortly before the caller's deadline (`ANSWER_RESERVE`) and the
  tool sees it cancelled, with time left to say so;
- a caller whose client did not declare the capability a question needs is
  refused as the SDK refuses a direct call (`MISSING_REQUIRED_CLIENT_CAPABILITY`,
  naming the tool), never left waiting. The tool is not resumed.

Calls forwarded at the message level (`federation.routing.asgi`) need none
of this: the caller's own capabilities travel in `_meta` to the serving
peer, and its round comes back as any other result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp.types as types
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import is_version_at_least

from federation.toolhost import ToolAnswer, error_result
from federation.trace import Trace

__all__ = ["MAX_INPUT_ROUNDS", "Retry", "carry_input"]

logger = logging.getLogger(__name__)

MAX_INPUT_ROUNDS = 10
"""Rounds of questions one call may ask a handshake-era caller before it is given up (the SDK client's own cap)."""

_STATE_ONLY_PAUSE_SECONDS = 0.05
"""A round with state and no question asks to be retried; a short pause first, as the SDK client makes."""

ANSWER_RESERVE = (0.25, 5.0)
"""Of the caller's time left when a question goes out, the part (a fraction, at most so many seconds) kept for the tool to
answer after the user did not: the retry that tells it "cancelled" must still fit in the caller's deadline."""

_MODERN = "2026-07-28"

Retry = Callable[[types.InputResponseRequestParams], Awaitable[ToolAnswer]]
"""Sends the call again with the answers to the last round (and its `requestState`)."""


async def carry_input(ctx: ServerRequestContext[Any], answer: ToolAnswer, retry: Retry, trace: Trace, *, tool: str) -> ToolAnswer:
    """The tool's answer for this peer's caller, whose request `ctx` is: see the module docstring.

    `answer` is the forwarded call's first answer; `tool` is the name the caller called.
    """
    rounds = 0
    while isinstance(answer, types.InputRequiredResult):
        questions = answer.input_requests or {}
        for question in questions.values():
            _require_capability(ctx, question, tool)
        if is_version_at_least(ctx.protocol_version, _MODERN):
            return answer
        rounds += 1
        if rounds > MAX_INPUT_ROUNDS:
            return error_result(f"{tool} kept asking for input: more than {MAX_INPUT_ROUNDS} rounds; given up.")
        if questions:
            responses: types.InputResponses | None = {key: await _ask(ctx, question, trace) for key, question in questions.items()}
        else:
            await anyio.sleep(_STATE_ONLY_PAUSE_SECONDS)
            responses = None
        answer = await retry(types.InputResponseRequestParams(input_responses=responses, request_state=answer.request_state))
    return answer


async def _ask(ctx: ServerRequestContext[Any], question: types.InputRequest, trace: Trace) -> types.InputResponse:
    """One question to a handshake-era caller over its session, withdrawn at the caller's deadline."""
    related = ServerMessageMetadata(related_request_id=ctx.request_id)
    remaining = max(0.0, trace.remaining_s())
    fraction, most = ANSWER_RESERVE
    with anyio.move_on_after(remaining - min(remaining * fraction, most)):
        if isinstance(question, types.ElicitRequest):
            return await ctx.session.send_request(question, types.ElicitResult, metadata=related)
        if isinstance(question, types.CreateMessageRequest):
            return await ctx.session.send_request(question, types.CreateMessageResult, metadata=related)
        return await ctx.session.send_request(question, types.ListRootsResult, metadata=related)
    if isinstance(question, types.ElicitRequest):
        logger.info("the user did not answer %r within the caller's deadline", getattr(question.params, "message", ""))
        return types.ElicitResult(action="cancel")
    raise MCPError(code=types.REQUEST_TIMEOUT, message=f"the client did not answer {question.method} within the caller's deadline")


def _require_capability(ctx: ServerRequestContext[Any], question: types.InputRequest, tool: str) -> None:
    """Refuse, as the SDK does for a direct call, a question the caller's client did not declare it can answer."""
    capabilities = ctx.session.client_capabilities or types.ClientCapabilities()
    required: types.ClientCapabilities | None = None
    if isinstance(question, types.ElicitRequest):
        elicitation = capabilities.elicitation
        if isinstance(question.params, types.ElicitRequestURLParams):
            if elicitation is None or elicitation.url is None:
                required, name = types.ClientCapabilities(elicitation=types.ElicitationCapability(url=types.UrlElicitationCapability())), "URL elicitation"
        elif elicitation is None or (elicitation.form is None and elicitation.url is not None):  # a bare `elicitation: {}` means form
            required, name = types.ClientCapabilities(elicitation=types.ElicitationCapability(form=types.FormElicitationCapability())), "form elicitation"
    elif isinstance(question, types.CreateMessageRequest):
        if capabilities.sampling is None:
            required, name = types.ClientCapabilities(sampling=types.SamplingCapability()), "sampling"
    elif capabilities.roots is None:
        required, name = types.ClientCapabilities(roots=types.RootsCapability()), "roots"
    if required is None:
        return
    data = types.MissingRequiredClientCapabilityErrorData(required_capabilities=required)
    raise MCPError(
        code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
        message=f"{tool} needs input from the user, but the client did not declare the {name} capability; use a client that supports it",
        data=data.model_dump(by_alias=True, mode="json", exclude_none=True),
    )
