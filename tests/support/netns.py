"""A private LAN of network namespaces for tests of peers on separate "hosts".

`lan_namespaces(n)` builds a namespace holding a bridge, and n peer
namespaces each joined to it by a veth pair, with addresses 10.77.0.1-n/24
and the multicast route on the veth. Nothing is created in the root
namespace, so eth0 and the host's own network are never touched; everything
is removed on exit. Where `ip netns` is not permitted the `lan` fixtures skip
and say why (`lan` is a fixture: a plugin of tests/conftest.py). `in_namespace` runs a Python snippet inside one of them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from tests.support.paths import REPO

__all__ = ["in_namespace", "lan", "lan_namespaces"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _netns_problem() -> str | None:
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    probe = f"fedprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        return f"creating a network namespace is not permitted here ({stderr.decode().strip() or exc}); run as root to test multi-host peers"
    _ip("netns", "del", probe)
    return None


@contextmanager
def lan_namespaces(count: int) -> Iterator[list[str]]:
    """`count` peer namespaces on one bridge; yields their names (host i has 10.77.0.<i+1>). Skips where not permitted."""
    if problem := _netns_problem():
        pytest.skip(problem)
    tag = f"fd{os.getpid()}"
    bridge_ns, hosts = f"{tag}br", [f"{tag}h{i}" for i in range(1, count + 1)]
    created: list[str] = []
    try:
        _ip("netns", "add", bridge_ns)
        created.append(bridge_ns)
        _ip("-n", bridge_ns, "link", "add", "fbr0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", bridge_ns, "link", "set", "fbr0", "up")
        for i, host in enumerate(hosts, 1):
            _ip("netns", "add", host)
            created.append(host)
            _ip("-n", bridge_ns, "link", "add", f"vh{i}", "type", "veth", "peer", "name", f"vn{i}")
            _ip("-n", bridge_ns, "link", "set", f"vh{i}", "master", "fbr0", "up")
            _ip("-n", bridge_ns, "link", "set", f"vn{i}", "netns", host)
            _ip("-n", host, "addr", "add", f"10.77.0.{i}/24", "dev", f"vn{i}")
            _ip("-n", host, "link", "set", f"vn{i}", "up")
            _ip("-n", host, "link", "set", "lo", "up")
            _ip("-n", host, "route", "add", "224.0.0.0/4", "dev", f"vn{i}")
        yield hosts
    finally:
        for namespace in reversed(created):  # deleting a namespace deletes its veth ends and the bridge
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)


@pytest.fixture
def lan() -> Iterator[list[str]]:
    """Three peer namespaces on one bridge (see `lan_namespaces`)."""
    with lan_namespaces(3) as hosts:
        yield hosts


async def in_namespace(host: str, code: str) -> object:
    """Run a Python snippet inside a namespace; it prints JSON, which is returned."""
    result = await anyio.run_process(["ip", "netns", "exec", host, sys.executable, "-c", code], cwd=REPO, check=False)
    if result.returncode != 0:
        pytest.fail(f"snippet in {host} failed: {result.stderr.decode()[-1500:]}")
    return json.loads(result.stdout)
