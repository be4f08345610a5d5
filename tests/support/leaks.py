"""Pytest plugin: a test that leaves a child process, a listening port, a live Zeroconf or a thread behind fails.

Each test is measured from the start of its setup to the end of its
teardown; what is there at the end and was not there at the start is its
leak, reported as an error at its teardown. Things that stop asynchronously
(a thread finishing its last loop, a child reaped after SIGTERM) get a grace
period through `wait_until` before they count.

Wider-scoped fixtures (a module's shared model node) legitimately outlive a
test: whatever such a fixture's setup creates is owned by it and not charged
to the test; when the fixture is finalized its things must be gone by the end
of that teardown, and if not the fixture is named as the leaker. Worker
threads of the event loop (AnyIO's, asyncio's default executor) live as long
as the loop: while a module fixture keeps the test loop open they are its
threads; once the loop is closed they must be gone too.

Linux only: children and sockets are read from /proc (this process's
/proc/self/task/*/children, and its socket descriptors asked for SO_ACCEPTCONN).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.pytest_plugin
import pytest
import zeroconf

from tests.support.waiting import wait_until

_LOOP_WORKER_NAMES = ("AnyIO worker thread", "asyncio_")
"""Name prefixes of threads a running event loop keeps for `to_thread`/`run_in_executor`."""

_zeroconfs: weakref.WeakSet[zeroconf.Zeroconf] = weakref.WeakSet()


def _register_zeroconfs() -> None:
    """Hook every `Zeroconf` (AsyncZeroconf makes one too) into a weak registry, so live ones can be counted."""
    original = zeroconf.Zeroconf.__init__

    def registering_init(self: zeroconf.Zeroconf, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _zeroconfs.add(self)

    zeroconf.Zeroconf.__init__ = registering_init  # type: ignore[method-assign]


_register_zeroconfs()


@dataclass(frozen=True)
class _Thing:
    """One thing a test can leave behind; equal by (kind, key), described by `text`."""

    kind: str
    key: object
    text: str = field(compare=False)

    def __str__(self) -> str:
        return self.text


def _children() -> set[_Thing]:
    """This process's child processes (zombies included: a child never waited for is a leak too)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update(int(pid) for pid in (task / "children").read_text().split())
        except OSError:  # the thread ended while we looked
            continue
    things = set()
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # it was reaped meanwhile
            continue
        what = "zombie child process (exited, never waited for)" if state == "Z" else "child process"
        things.add(_Thing("child", pid, f"{what} {pid}: {command[:160] or '?'}"))
    return things


def _listening_sockets() -> set[_Thing]:
    """Sockets in this process accepting connections (SO_ACCEPTCONN), by inode; children are covered as processes."""
    things = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if not target.startswith("socket:["):
                continue
            with socket.socket(fileno=os.dup(int(fd))) as sock:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    things.add(_Thing("socket", target, f"listening socket {_address(sock.getsockname())}"))
        except OSError:  # closed meanwhile
            continue
    return things


def _address(name: object) -> str:
    if isinstance(name, tuple):
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return repr(name)  # a Unix socket's path


def _live_zeroconfs() -> set[_Thing]:
    return {_Thing("zeroconf", id(zc), f"open Zeroconf instance {id(zc):#x} (never closed)") for zc in list(_zeroconfs) if not zc.done}


def _threads(include_loop_workers: bool) -> set[_Thing]:
    things = set()
    for thread in threading.enumerate():
        if thread is threading.main_thread():
            continue
        if not include_loop_workers and thread.name.startswith(_LOOP_WORKER_NAMES):
            continue
        kind = "daemon thread" if thread.daemon else "non-daemon thread"
        things.add(_Thing("thread", (thread.ident, thread.name), f"{kind} {thread.name!r}"))
    return things


def _snapshot() -> set[_Thing]:
    """Everything a test could leave behind, right now."""
    loop_open = anyio.pytest_plugin._current_runner is not None
    return _children() | _listening_sockets() | _live_zeroconfs() | _threads(include_loop_workers=not loop_open)


def _wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    """`wait_until` from a sync hook: on the test loop while a wider fixture keeps it open (AnyIO allows no second
    loop then, and that loop's tasks may be what is still stopping), else on a loop of its own."""
    if (runner := anyio.pytest_plugin._current_runner) is not None:
        runner.run_test(wait_until, {"check": check, "what": what, "timeout": timeout})
    else:
        anyio.run(wait_until, check, what, timeout)


class LeakGuard:
    """Per-test bookkeeping: the baseline at setup, what wider fixtures own, what they must have released."""

    def __init__(self) -> None:
        self._baseline: set[_Thing] = set()
        self._owned: dict[Any, tuple[str, set[_Thing]]] = {}
        self._released: list[tuple[str, set[_Thing]]] = []

    def _owned_now(self) -> set[_Thing]:
        return set().union(*(things for _, things in self._owned.values()))

    def _leaks(self, item: pytest.Item) -> list[str]:
        now = _snapshot()
        found = [f"{item.nodeid} left behind {thing}" for thing in sorted(now - self._baseline - self._owned_now(), key=str)]
        for owner, things in self._released:
            found += [f"{owner} left behind {thing}" for thing in sorted(now & things, key=str)]
        return found

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        self._baseline = _snapshot()
        self._released = []
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Generator[None, object, object]:
        if fixturedef.scope == "function":
            return (yield)
        before = _snapshot()
        try:
            return (yield)
        finally:
            self._owned[fixturedef] = (f"{fixturedef.scope}-scoped fixture {fixturedef.argname!r}", _snapshot() - before)

    @pytest.hookimpl
    def pytest_fixture_post_finalizer(self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
        if (owned := self._owned.pop(fixturedef, None)) is not None:
            self._released.append(owned)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
        result = yield
        if self._leaks(item):
            grace = float(item.config.getini("leak_grace_seconds"))
            with contextlib.suppress(pytest.fail.Exception):
                _wait_until(lambda: not self._leaks(item), "leaked things to stop", grace)
            if leaks := self._leaks(item):
                pytest.fail("\n".join(leaks), pytrace=False)
        return result


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("leak_grace_seconds", "how long things a test started may take to stop before they count as leaked", default="10")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LeakGuard(), "leak-guard")
