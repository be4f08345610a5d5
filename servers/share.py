"""Re-expose a stdio MCP server (an `npx` server, a script) as tools of this process.

```python
async with SharedStdioServer("fs", "npx -y @modelcontextprotocol/server-filesystem ~/docs") as fs:
    tools = await fs.list_tools()                       # the child's tools, names as-is
    result = await fs.call_tool(ctx, "list_directory", {"path": "."})
```

One long-lived SDK `Client` session (handshake era, as Claude Desktop speaks)
talks to the child over its stdin/stdout; every call is multiplexed on it and
the child's progress notifications are relayed to the caller through the
caller's own request context. A supervisor task owns that session, because an
SDK client must be closed by the task that opened it; it also restarts the
child with exponential backoff when it dies (a bounded number of times, reset
once a child has run for a while), and stops it — its whole process group —
when the context exits.

`allow` limits what is offered to the named tools, checked at every call and
not only in the tool list: a client that calls a hidden tool by name is
refused, and the child never sees the call. (A share says what it trusts the
mesh with; `tools/list` is only what a polite client looks at.)

The child's prompts and resources are the host's to offer (`connection()`
hands out the live session); when the child announces that its tools,
prompts or resources changed, its tools are listed again and `on_change` is
awaited, so the host can tell its own clients.

The child's stderr goes to a pipe of ours, never to our stdout (which a stdio
gateway uses for protocol): its lines are logged, and the last few explain a
crash. A child that fails to start does not break its host: `error` says why
(the command and its stderr tail) and `list_tools()` offers nothing.

This module satisfies the federation's `ToolProvider` protocol structurally
and, like every server here, imports nothing from `federation/`.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO

import anyio
import mcp.types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

__all__ = ["SharedStdioServer"]

logger = logging.getLogger(__name__)

START_TIMEOUT = 60.0
"""Seconds for a child to finish the MCP handshake; `npx -y` may download its package first."""

CALL_TIMEOUT = 300.0
"""Seconds one call to the child may take before the caller gets a timeout error."""

RESTART_ATTEMPTS = 5
"""Restarts in a row before giving up on a child that keeps dying."""

RESTART_BACKOFF = (0.5, 8.0)
"""First delay before a restart and its cap, in seconds; the delay doubles per attempt."""

STABLE_SECONDS = 30.0
"""A child that ran this long before dying gets its whole restart budget back."""

RESTART_WAIT = 10.0
"""How long a call that arrives while the child restarts waits for it."""

STDERR_TAIL_LINES = 20
_STDERR_LINE_LIMIT = 4096

ChangeCallback = Callable[[], Awaitable[None]]


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def _root_cause(exc: BaseException) -> BaseException:
    """The one real error inside the task-group wrappers the SDK raises through."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _ExitWatch:
    """The session's read stream, setting `exited` when the child's stdout ends (it died)."""

    def __init__(self, inner: Any, exited: anyio.Event) -> None:
        self._inner = inner
        self._exited = exited

    async def receive(self) -> SessionMessage | Exception:
        try:
            message: SessionMessage | Exception = await self._inner.receive()  # the SDK's stream type is private to it
            return message
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._exited.set()
            raise

    def __aiter__(self) -> _ExitWatch:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _ExitWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def _child_transport(params: StdioServerParameters, errlog: TextIO, exited: anyio.Event) -> AsyncIterator[tuple[_ExitWatch, Any]]:
    """The SDK's stdio transport, with the child's stderr into `errlog` and its exit made visible."""
    async with stdio_client(params, errlog=errlog) as (read_stream, write_stream):
        errlog.close()  # the child has its own copy; ours would hold the pipe open after it dies
        yield _ExitWatch(read_stream, exited), write_stream


@dataclass
class _Ending:
    """How one run of the child ended: what happened, and the last lines of its stderr."""

    started: bool
    what: str
    tail: list[str]

    def explain(self, then: str = "") -> str:
        if not self.tail:
            return self.what + then
        return self.what + then + "; its stderr ended with:\n    " + "\n    ".join(self.tail)


class SharedStdioServer:
    """A stdio MCP server run as a child process and offered as tools; an async context manager."""

    def __init__(
        self,
        name: str,
        command: str,
        *,
        on_change: ChangeCallback | None = None,
        start_timeout: float = START_TIMEOUT,
        call_timeout: float = CALL_TIMEOUT,
        restart_attempts: int | None = None,
        allow: Collection[str] | None = None,
    ) -> None:
        """`command` is split like a shell would (`shlex`); ValueError if it is empty or badly quoted.

        `on_change` is awaited whenever the offered tools may have changed: after each
        (re)start and when the server gives up on the child. `restart_attempts` defaults
        to `RESTART_ATTEMPTS`, read when the server is made. `allow` names the only tools
        offered and served (None: all of the child's).
        """
        argv = shlex.split(command)
        if not argv:
            raise ValueError(f"shared server {name!r} has an empty command")
        self.name = name
        self.command = command
        self.error: str | None = None
        self.restarts = 0
        self._params = StdioServerParameters(command=argv[0], args=argv[1:])
        self._on_change = on_change
        self._start_timeout = start_timeout
        self._call_timeout = call_timeout
        self._restart_attempts = RESTART_ATTEMPTS if restart_attempts is None else restart_attempts
        self._client: Client | None = None
        self.allow = frozenset(allow) if allow is not None else None
        self._tools: list[types.Tool] = []  # all the child's, allowed or not
        self._up = anyio.Event()
        self._child_changed = anyio.Event()
        self._stack: AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None

    def __repr__(self) -> str:
        return f"SharedStdioServer({self.name!r}, {self.command!r})"

    # -- lifecycle -------------------------------------------------------
    async def __aenter__(self) -> SharedStdioServer:
        """Start the child and wait until it serves or has failed to start (never raises for that)."""
        if self._stack is not None:
            raise RuntimeError(f"{self!r} was already started; make a new one")
        self._stack = AsyncExitStack()
        self._task_group = await self._stack.enter_async_context(anyio.create_task_group())
        await self._task_group.start(self._supervise)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the child (stdin closed, then its process group terminated if it lingers)."""
        assert self._stack is not None and self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._stack.aclose()
        self._tools = []

    @property
    def running(self) -> bool:
        return self._client is not None

    # -- ToolProvider ------------------------------------------------------
    async def list_tools(self) -> list[types.Tool]:
        """The child's allowed tools; kept while it restarts, empty once it failed for good."""
        return [tool for tool in self._tools if self._allowed(tool.name)]

    def claims(self, name: str) -> bool:
        """Answers for the child's hidden tools too, so that calling one by name is refused with the reason."""
        return any(tool.name == name for tool in self._tools)

    def _allowed(self, name: str) -> bool:
        return self.allow is None or name in self.allow

    async def call_tool(self, ctx: ServerRequestContext[Any], name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Call `name` on the child, if allowed; its progress reaches the caller of `ctx`."""
        if not self._allowed(name):
            offered = ", ".join(sorted(self.allow or ())) or "(none)"
            return _error(f"tool {name!r} is not shared: this peer offers only {offered} of shared server {self.name!r} (--allow).")
        client = await self._wait_up()
        if client is None:
            return _error(f"shared server {self.name!r} (`{self.command}`) is not running: {self.error or 'it is restarting'}.")

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        try:
            return await client.call_tool(name, arguments, progress_callback=relay)
        except MCPError as exc:
            if exc.error.code == types.CONNECTION_CLOSED:
                return _error(f"shared server {self.name!r} exited during the call to {name}; it is being restarted, try again.")
            return _error(f"{name} on shared server {self.name!r}: {exc.error.message}")

    async def connection(self) -> Client | None:
        """The live session with the child (waiting a while if it restarts), or None if it is not running."""
        return await self._wait_up()

    async def _wait_up(self) -> Client | None:
        with anyio.move_on_after(RESTART_WAIT):
            await self._up.wait()
        return self._client

    # -- supervision -------------------------------------------------------
    async def _supervise(self, *, task_status: TaskStatus[None]) -> None:
        """Run the child, restarting it with backoff; `task_status` settles after the first try."""
        settled = False

        def settle() -> None:
            nonlocal settled
            if not settled:
                settled = True
                task_status.started()

        ever_up, attempt = False, 0
        while True:
            began = anyio.current_time()
            ending = await self._run_child(on_up=settle)
            ever_up = ever_up or ending.started
            if not ever_up:  # a bad command or a broken server: retrying will not help
                self._give_up(ending.explain())
                settle()
                return
            if anyio.current_time() - began >= STABLE_SECONDS:
                attempt = 0
            attempt += 1
            if attempt > self._restart_attempts:
                self._give_up(ending.explain(f"; gave up after {self._restart_attempts} restarts in a row"))
                await self._changed()
                return
            delay = min(RESTART_BACKOFF[0] * 2 ** (attempt - 1), RESTART_BACKOFF[1])
            logger.warning("%s", ending.explain(f"; restart {attempt}/{self._restart_attempts} in {delay:.1f} s"))
            await anyio.sleep(delay)
            self.restarts += 1

    def _mark_down(self) -> None:
        self._client = None
        if self._up.is_set():
            self._up = anyio.Event()

    def _give_up(self, message: str) -> None:
        self.error = message
        self._tools = []
        self._up.set()  # wake waiting calls: they find no client and report the error
        logger.error("%s", message)

    async def _changed(self) -> None:
        if self._on_change is None:
            return
        try:
            await self._on_change()
        except Exception:  # the host's trouble must not stop supervision
            logger.exception("shared server %r: the tool-change callback failed", self.name)

    async def _run_child(self, on_up: Callable[[], None]) -> _Ending:
        """Run the child once, until it exits (or the context is cancelled)."""
        read_fd, write_fd = os.pipe()
        tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        pumped, exited = anyio.Event(), anyio.Event()
        started = False
        failure: BaseException | None = None
        async with anyio.create_task_group() as pumps:
            pumps.start_soon(self._pump_stderr, read_fd, tail, pumped)
            with os.fdopen(write_fd, "w") as errlog, anyio.CancelScope(deadline=anyio.current_time() + self._start_timeout) as handshake:
                try:
                    transport = _child_transport(self._params, errlog, exited)
                    async with Client(transport, mode="legacy", cache=None, read_timeout_seconds=self._call_timeout, message_handler=self._on_message) as client:
                        tools = await self._child_tools(client)
                        handshake.deadline = math.inf
                        started = True
                        self._client, self._tools, self.error = client, tools, None
                        self._up.set()
                        on_up()
                        logger.info("shared server %r serving %d tools", self.name, len(tools))
                        self._warn_unknown_allowed(tools)
                        await self._changed()
                        async with anyio.create_task_group() as following:
                            following.start_soon(self._follow_changes, client)
                            await exited.wait()
                            following.cancel_scope.cancel()
                        self._mark_down()  # new calls wait for the restart, not for this teardown
                except Exception as exc:  # noqa: BLE001 - explained to the user below, with the stderr tail
                    failure = _root_cause(exc)
                finally:
                    self._mark_down()
            with anyio.move_on_after(1):  # let the pump read what the child wrote before it died
                await pumped.wait()
            pumps.cancel_scope.cancel()
        return _Ending(started, self._describe_end(started, handshake.cancelled_caught, failure), list(tail))

    async def _on_message(self, message: Any) -> None:
        """The child said a list changed: wake `_follow_changes` (the SDK calls this inline, so no session I/O here)."""
        if isinstance(message, types.ToolListChangedNotification | types.PromptListChangedNotification | types.ResourceListChangedNotification):
            self._child_changed.set()

    async def _follow_changes(self, client: Client) -> None:
        """List the child's tools again after it announces a change, then tell the host."""
        while True:
            await self._child_changed.wait()
            self._child_changed = anyio.Event()
            try:
                self._tools = await self._child_tools(client)
            except MCPError as exc:
                logger.warning("shared server %r: could not list its tools after a change: %s", self.name, exc.error.message)
            await self._changed()

    def _warn_unknown_allowed(self, tools: list[types.Tool]) -> None:
        """An `allow` naming a tool the child lacks is most likely a typo: say so, since nothing else will."""
        missing = sorted((self.allow or frozenset()) - {tool.name for tool in tools})
        if missing:
            logger.warning(
                "shared server %r has no tool %s, which --allow names; it offers: %s",
                self.name, ", ".join(missing), ", ".join(tool.name for tool in tools) or "(none)",
            )

    async def _child_tools(self, client: Client) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    def _describe_end(self, started: bool, timed_out: bool, failure: BaseException | None) -> str:
        who = f"shared server {self.name!r} (`{self.command}`)"
        if started:
            return f"{who} exited"
        if timed_out:
            return f"{who} did not complete the MCP handshake within {self._start_timeout:g} s"
        if isinstance(failure, FileNotFoundError):
            return f"cannot start {who}: {self._params.command!r} was not found; is it installed and on PATH?"
        if isinstance(failure, OSError):
            return f"cannot start {who}: {failure.strerror or failure}"
        if isinstance(failure, MCPError) and failure.error.code == types.CONNECTION_CLOSED:
            return f"{who} exited before completing the MCP handshake"
        if isinstance(failure, MCPError):
            return f"{who} refused the MCP handshake: {failure.error.message}"
        return f"{who} failed to start: {failure!r}"

    async def _pump_stderr(self, fd: int, tail: deque[str], done: anyio.Event) -> None:
        """Log the child's stderr line by line, keeping the last lines; ends at EOF."""
        os.set_blocking(fd, False)
        pending = b""
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:  # a broken pipe ends the log, never the peer
                    break
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > _STDERR_LINE_LIMIT:
                    lines, pending = [*lines, pending], b""
                for line in lines:
                    self._stderr_line(line, tail)
            if pending:
                self._stderr_line(pending, tail)
        finally:
            os.close(fd)
            done.set()

    def _stderr_line(self, raw: bytes, tail: deque[str]) -> None:
        text = raw.decode(errors="replace").rstrip()
        if text:
            tail.append(text)
            logger.info("[%s] %s", self.name, text)
