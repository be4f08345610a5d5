"""The suite guards itself: a test that leaks, or blocks the event loop from our code, fails, named with what it did.

Each check runs a small inner pytest session (a child process) with the guard
plugins of tests/support (tests/support/leaks.py, tests/support/blocking.py) and reads its report.
"""

from __future__ import annotations

import pytest

from tests.support.paths import REPO

LEAKY_TESTS = '''
import socket, subprocess, sys, threading, time
import anyio.to_thread, pytest, zeroconf

KEEP = []

def child():
    """A child that ends when this session does (its stdin closes), so none outlives the check."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)

def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock

@pytest.fixture(scope="module")
def shared_server():
    sock = listening()
    yield sock
    sock.close()

@pytest.fixture(scope="module")
def careless_server():
    KEEP.append(listening())
    yield

def test_thread():
    threading.Thread(target=time.sleep, args=(30,), name="sleeper", daemon=True).start()

def test_port():
    KEEP.append(listening())

def test_child():
    KEEP.append(child())

def test_zeroconf():
    KEEP.append(zeroconf.Zeroconf(interfaces=["127.0.0.1"]))

def test_clean_child_and_short_thread():
    process = child()
    process.communicate(b"")
    threading.Thread(target=time.sleep, args=(0.05,)).start()

@pytest.mark.anyio
async def test_worker_threads_of_the_closed_loop():
    await anyio.to_thread.run_sync(time.sleep, 0.01)

def test_shared_fixture_first(shared_server):
    pass

def test_shared_fixture_second(shared_server):
    pass

def test_careless_fixture(careless_server):
    pass

@pytest.fixture(scope="module")
async def open_loop():
    yield

@pytest.mark.anyio
async def test_slow_to_stop_while_a_fixture_keeps_the_loop_open(open_loop):
    threading.Thread(target=time.sleep, args=(0.05,)).start()

@pytest.mark.anyio
async def test_leak_while_a_fixture_keeps_the_loop_open(open_loop):
    KEEP.append(listening())

def test_last():
    pass
'''

BLOCKING_TESTS = '''
import time
import pytest
from federation.home import state_dir

@pytest.mark.anyio
async def test_our_code_blocks_the_loop(tmp_path):
    state_dir(tmp_path / "state")

@pytest.mark.anyio
async def test_the_test_itself_may_block(tmp_path):
    time.sleep(0.01)

def test_our_code_outside_a_loop(tmp_path):
    state_dir(tmp_path / "state")
'''


INNER_CONFTEST = '''
import pytest

pytest_plugins = ["tests.support.leaks", "tests.support.blocking"]

@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"
'''


def _inner_session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tests: str) -> pytest.RunResult:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=tests)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "leak_grace_seconds=1", "-rfE")


def test_each_leak_fails_the_test_that_left_it_and_shared_fixtures_answer_for_their_own(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _inner_session(pytester, monkeypatch, LEAKY_TESTS)
    result.assert_outcomes(passed=12, errors=6)
    result.stdout.fnmatch_lines_random(
        [
            "ERROR test_inner.py::test_thread - *",
            "test_inner.py::test_thread left behind daemon thread 'sleeper'",
            "test_inner.py::test_port left behind listening socket 127.0.0.1:*",
            "test_inner.py::test_child left behind child process *-c import sys; sys.stdin.read()",
            "test_inner.py::test_zeroconf left behind open Zeroconf instance * (never closed)",
            "ERROR test_inner.py::test_last - *",
            "module-scoped fixture 'careless_server' left behind listening socket 127.0.0.1:*",
            "test_inner.py::test_leak_while_a_fixture_keeps_the_loop_open left behind listening socket 127.0.0.1:*",
        ]
    )


def test_a_blocking_call_from_our_code_on_the_event_loop_fails_the_async_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _inner_session(pytester, monkeypatch, BLOCKING_TESTS)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines_random(["E *.BlockingError: Blocking call to os.mkdir", "FAILED test_inner.py::test_our_code_blocks_the_loop*"])
