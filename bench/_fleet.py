"""Peer processes for the mesh benchmarks (bench.discovery, bench.scale), and what they cost (/proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
from anyio.abc import Process

REPO = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")
_START_DEADLINE = 120.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size: each shared page counted 1/sharers (RSS counts it whole in every process)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    """The pids a process started (`serve --copies`: its copies)."""
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


class Fleet:
    """`mcpfed` processes (light peers: `serve --model none`, or a relay) in one mesh, all killed on exit."""

    def __init__(self, home: Path, mesh: str) -> None:
        self._home = home
        self._mesh = mesh
        self._processes: list[Process] = []

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            for process in self._processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
            for process in self._processes:
                await process.wait()

    async def launch(self, name: str, *args: str) -> Process:
        """A light peer named `name`, with extra `serve` flags."""
        return await self.start("serve", "--model", "none", "--port", "0", "--name", name, "--home", str(self._home / name), *args)

    async def launch_copies(self, name: str, count: int, *args: str) -> tuple[Process, list[str]]:
        """`count` light peers forked from one process (`serve --copies`), and their URLs."""
        process = await self.launch(name, "--copies", str(count), *args)
        return process, await self.urls_of(process, count)

    async def start(self, *args: str) -> Process:
        """`mcpfed ARGS` in this fleet's mesh; its first stdout line is its URL (`url_of`)."""
        env = os.environ | {"MCPFED_MESH": self._mesh, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "federation.cli", *args]
        process = await anyio.open_process(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._processes.append(process)
        return process

    @staticmethod
    async def url_of(process: Process) -> str:
        return (await Fleet.urls_of(process, 1))[0]

    @staticmethod
    async def urls_of(process: Process, count: int) -> list[str]:
        """The first `count` lines of its stdout: the URLs it serves at."""
        assert process.stdout is not None
        buffered = b""
        with anyio.fail_after(_START_DEADLINE):
            while buffered.count(b"\n") < count:
                buffered += await process.stdout.receive()
        return [line.strip() for line in buffered.decode().splitlines()[:count]]
