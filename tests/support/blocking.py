"""Pytest plugin: async tests run under blockbuster, so a blocking call on the event loop from our code fails.

blockbuster (the detector python-zeroconf's suite uses) wraps the blocking
standard calls (file and socket I/O, `time.sleep`, SQLite, lock waits…) and
raises `BlockingError` when one runs on a thread with a running event loop
and a frame of `federation`, `servers` or `tui` is on the stack. It is on for
the setup, call and teardown of every async (AnyIO) test, async fixtures
included; sync tests run without it.

A blocking call that is intended and harmless is allowed below, narrowly (the
named functions of one file, and whatever they call), each with its reason.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

_SCANNED = ["federation", "servers", "tui"]

_INTENDED: list[tuple[str, set[str], str]] = [
    (
        "<frozen importlib._bootstrap>",
        {"_find_and_load"},
        "A library importing a module on first use (httpx2 imports httpcore2, which reads its package metadata, when "
        "the first client is made): once per process, like any import.",
    ),
    (
        "federation/node.py",
        {"__init__"},
        "Node's constructor is synchronous by design: bad settings, a missing model or an unreadable key fail at "
        "`Node(...)`, before anything starts. It creates the state folder, reads or writes the key, opens the "
        "database and checks the model file (the embedded Gemma is verified by hash), once per node.",
    ),
    (
        "federation/relay/server.py",
        {"__init__"},
        "Relay's constructor, like Node's, makes its state folder before anything starts.",
    ),
    (
        "federation/settings.py",
        {"__init__"},
        "Settings are checked when made (pydantic validators are synchronous): the notes folder exists, the stored mesh is read.",
    ),
    (
        "federation/store.py",
        {"__init__", "calls", "rows", "heads", "verify", "count_calls"},
        "The store's constructor and readers are synchronous for the CLI (`mcpfed ledger`, `mcpfed peers`), which runs no "
        "loop; tests read the ledger from async tests. The running peer writes through its worker thread (not allowed here).",
    ),
    (
        "servers/llama_engine.py",
        {"__init__"},
        "LlamaEngine's constructor reads the GGUF header (a few KB) so a bad file fails at once, like Node's.",
    ),
    (
        "servers/embedded_models.py",
        {"model_path"},
        "Locating the embedded Gemma verifies its assembled file by hash (253 MB, each call). Node's constructor and "
        "model fixtures call it before their peer runs. Known cost, left for a decision: memoize, or look up in __aenter__.",
    ),
    (
        "tui/observer.py",
        {"observer_settings"},
        "The TUI makes its observer's settings (state folder created) before it starts its loop; tests do it in async tests.",
    ),
    (
        "textual/app.py",
        {"__init__"},
        "Textual's App constructor resolves its CSS paths (stat), once per app.",
    ),
    (
        "federation/membership.py",
        {"create_mesh", "load_mesh"},
        "`mcpfed init` makes a mesh outside any loop, settings read it when made (above), Mesh.connect off the loop; "
        "tests make and read one in async tests.",
    ),
]
"""(file, functions in it, why): blocking calls made anywhere below these functions are allowed."""


def _allow(buster: BlockBuster) -> None:
    """Let every wrapped call block below the functions of `_INTENDED`."""
    for function in buster.functions.values():
        for path, names, _why in _INTENDED:
            function.can_block_in(path, names)


@contextmanager
def _busted(item: pytest.Item) -> Iterator[None]:
    if "anyio_backend" not in getattr(item, "fixturenames", ()):
        yield
        return
    with blockbuster_ctx(_SCANNED) as buster:
        _allow(buster)
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    with _busted(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with _busted(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    with _busted(item):
        return (yield)
