"""How a mesh of light peers grows: the same figures for each size N, side by side, so the growth shows.

    python -m bench.scale --n 10,25,50,100            # mDNS and relay, ~5-10 minutes on 2 cores
    python -m bench.scale --n 10,25 --via mdns        # quicker
    python -m bench.scale --n '' --calls 1000         # only the relay's cost per call

For each way to meet (loopback mDNS; one relay with mDNS off) and each N,
N light peers (`mcpfed serve --model none --copies N`: forked from one
process that imported the code once; `--launch spawn` for one process each,
default timings) are launched at once, then:

- converge: from the last one serving until every peer lists every other up
  (launch -> serving is start-up, printed apart), to the moment: each row's
  `since` (when its status last changed) says when the last one came up, so
  the figure does not depend on how often the bench polls; and the CPU each
  peer spent from its start until then (on one machine the mesh is CPU-bound:
  launch plus convergence is about the sum of it over 2 cores);
- RSS per peer (median) and PSS per peer (shared pages split between the
  processes sharing them, the parent's included), and the idle mesh's CPU
  over 5 s, in cores;
- pings/s per peer, from each peer's `/health` counter (SWIM-style liveness:
  flat in N; it was N-1 before);
- crash: one peer SIGKILLed until every other lists it dead (mDNS: to the
  moment, from `since`) or no longer lists it (relay: the tunnel drops, the
  directory follows; as polled);
- relay: the relay process's idle CPU with N peers attached (directory reads).

Then the relay's CPU per 1,000 relayed `echo` calls (one client session,
one peer), and the import floor: RSS of a Python that only imported the
peer's code, against a running light peer. The machine's 1-minute load
average is printed beside each figure: it is shared.

It stops by itself: every wait has a deadline (a size that misses one is
printed as such and the run goes on), and once `--budget` seconds are spent
the remaining sizes are skipped. Everything started is killed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import Process
from mcp import Client

from bench._fleet import REPO, Fleet, children, cpu_seconds, pss_bytes, rss_bytes
from federation.discovery.relay import relayed_url

_IDLE_SECONDS = 5.0
_POLL_SECONDS = 0.5
_READS_PER_SECOND = 50
_CONVERGE_DEADLINE = 60.0
_CRASH_DEADLINE = 20.0

Figures = dict[str, Any]


async def _until(check: Callable[[], Awaitable[bool]], deadline: float, asked: Callable[[], int] = lambda: 0) -> float | None:
    """Seconds until `check()` holds, or None past `deadline`.

    Polled every `_POLL_SECONDS`, or less often while `asked()` peers would be
    read each time: at most `_READS_PER_SECOND` reads a second, so the
    measurement does not load the machine it measures (100 peers' `/peers`
    every 0.5 s took ~0.5 of the 2 cores).
    """
    started = time.perf_counter()
    while time.perf_counter() - started < deadline:
        if await check():
            return time.perf_counter() - started
        await anyio.sleep(max(_POLL_SECONDS, asked() / _READS_PER_SECOND))
    return None


class Mesh:
    """N running light peers, read over HTTP."""

    def __init__(self, http: httpx.AsyncClient, processes: list[Process], urls: list[str]) -> None:
        self.http = http
        self.processes = processes
        self.bases = [url.removesuffix("/mcp") for url in urls]

    async def _get(self, i: int, path: str) -> Any:
        try:
            return (await self.http.get(self.bases[i] + path)).json()
        except (httpx.HTTPError, ValueError):
            return None

    async def _each(self, indices: list[int], path: str) -> dict[int, Any]:
        answers: dict[int, Any] = {}

        async def one(i: int) -> None:
            answers[i] = await self._get(i, path)

        async with anyio.create_task_group() as task_group:
            for i in indices:
                task_group.start_soon(one, i)
        return answers

    async def converged(
        self, expect: Callable[[list[dict[str, Any]]], bool], among: list[int], moment: Callable[[list[dict[str, Any]]], float]
    ) -> tuple[Callable[[], Awaitable[bool]], Callable[[], int], list[float]]:
        """A check that every peer in `among` has a `/peers` listing `expect` accepts (each, once true, is not asked again),
        how many peers it still asks, and the `moment` (unix time, from the rows' `since`) each listing came true."""
        pending = set(among)
        moments: list[float] = []

        async def check() -> bool:
            for i, body in (await self._each(sorted(pending), "/peers")).items():
                if isinstance(body, dict) and expect(body.get("peers", [])):
                    pending.discard(i)
                    moments.append(moment(body["peers"]))
            return not pending

        return check, lambda: len(pending), moments

    async def pings(self) -> int:
        return sum(b.get("pings", 0) for b in (await self._each(list(range(len(self.bases))), "/health")).values() if isinstance(b, dict))


async def _start(fleet: Fleet, size: int, via: str, launch: str, extra: tuple[str, ...]) -> tuple[list[Process], list[int], list[str]]:
    """N light peers: forked from one `serve --copies N` (fork) or one process each (spawn); (processes, peer pids, URLs)."""
    if launch == "fork":
        parent, urls = await fleet.launch_copies(f"{via}{size}", size, *extra)
        return [parent], children(parent.pid), urls
    processes = [await fleet.launch(f"{via}{size}-{i}", *extra) for i in range(size)]
    urls = [""] * size

    async def read(i: int) -> None:
        urls[i] = await fleet.url_of(processes[i])

    async with anyio.create_task_group() as task_group:
        for i in range(size):
            task_group.start_soon(read, i)
    return processes, [p.pid for p in processes], urls


async def _mesh_run(fleet: Fleet, http: httpx.AsyncClient, size: int, via: str, launch: str, relay: Process | None, relay_url: str) -> Figures:
    extra = ("--mdns", "off", "--relay", relay_url) if via == "relay" else ()
    launched = time.perf_counter()
    processes, pids, urls = await _start(fleet, size, via, launch, extra)
    serving, all_serving = time.perf_counter() - launched, time.time()
    mesh = Mesh(http, processes, urls)
    everyone = list(range(size))
    check, asked, ups = await mesh.converged(lambda peers: sum(p["status"] == "up" for p in peers) == size - 1, everyone, _last_change)
    converge = None if await _until(check, _CONVERGE_DEADLINE, asked) is None else max(0.0, max(ups) - all_serving)
    shared = sum(pss_bytes(p.pid) for p in processes) if launch == "fork" else 0  # the parent's pages, shared by all copies
    figures: Figures = {
        "serving": serving,
        "converge": converge,
        "cpu_to_converge": sum(cpu_seconds(pid) for pid in pids) / size,  # each peer's own, from its start
        "rss_mb": statistics.median(rss_bytes(pid) for pid in pids) / 1e6,
        "pss_mb": (sum(pss_bytes(pid) for pid in pids) + shared) / size / 1e6,
    }
    watched = [*pids, *([relay.pid] if relay else [])]
    cpu_before = [cpu_seconds(pid) for pid in watched]
    pings_before, idle_from = await mesh.pings(), time.perf_counter()
    await anyio.sleep(_IDLE_SECONDS)
    pings = await mesh.pings() - pings_before
    idle = time.perf_counter() - idle_from  # longer than asked on a saturated machine
    cpu = [(cpu_seconds(pid) - before) / idle for pid, before in zip(watched, cpu_before, strict=True)]
    figures["pings_per_peer_s"] = pings / size / idle
    figures["cpu_cores"] = sum(cpu[:size])
    figures["relay_cpu"] = cpu[size] if relay else None
    ids = {i: (body or {}).get("id") for i, body in (await mesh._each(everyone, "/health")).items()}
    os.kill(pids[0], signal.SIGKILL)
    killed = time.time()
    answers = await mesh._each(everyone, "/health")  # which peer that was: the one that no longer answers
    victim = next((i for i in everyone if not isinstance(answers[i], dict)), None)
    if victim is None:
        figures["crash"] = None
    else:
        victim_id = ids[victim]
        others = [i for i in everyone if i != victim]
        if via == "relay":  # the row goes: the moment is when the listing was read (the poll's resolution)
            gone, asked, moments = await mesh.converged(lambda peers: all(p["id"] != victim_id or p["status"] != "up" for p in peers), others, lambda _: time.time())
        else:
            gone, asked, moments = await mesh.converged(
                lambda peers: any(p["id"] == victim_id and p["status"] == "dead" for p in peers), others, lambda peers: next(p["since"] for p in peers if p["id"] == victim_id)
            )
        took = await _until(gone, _CRASH_DEADLINE, asked)
        figures["crash"] = None if took is None else max(moments) - killed
    for pid in pids[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for process in processes:
        with contextlib.suppress(ProcessLookupError):  # --launch spawn: the crash victim is one of them, already gone
            process.kill()
        await process.wait()
    return figures


async def _relay_cost(fleet: Fleet, relay: Process, relay_url: str, calls: int) -> float:
    """The relay process's CPU seconds per 1,000 relayed `echo` calls to one peer."""
    peer = await fleet.launch("echo-peer", "--mdns", "off", "--relay", relay_url, "--share", f"echo={sys.executable} -m servers.echo --stdio")
    base = (await fleet.url_of(peer)).removesuffix("/mcp")
    async with httpx.AsyncClient(trust_env=False) as http:
        peer_id = (await http.get(base + "/health")).json()["id"]

        async def attached() -> bool:
            return any(p["card"]["id"] == peer_id for p in (await http.get(relay_url + "/peers")).json().get("peers", []))

        await _until(attached, _CONVERGE_DEADLINE)
    async with Client(relayed_url(relay_url, peer_id)) as client:
        tool = next(t.name for t in (await client.list_tools()).tools if t.name.endswith("echo"))
        for _ in range(20):  # warm-up
            await client.call_tool(tool, {"text": "hi"})
        before = cpu_seconds(relay.pid)
        for _ in range(calls):
            await client.call_tool(tool, {"text": "hi"})
        spent = cpu_seconds(relay.pid) - before
    peer.kill()
    return spent * 1000 / calls


def _last_change(peers: list[dict[str, Any]]) -> float:
    """When the last of these rows took its status (`since`): the moment a peer saw them all as they are now."""
    return max((p["since"] for p in peers), default=0.0)


def _import_floor_mb() -> float:
    """RSS of a Python that imported the peer's code and did nothing else."""
    code = "import federation.cli, federation.node; print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    return int(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout) * 1024 / 1e6


def _cell(value: float | None, fmt: str) -> str:
    return f"{'missed':>8}" if value is None else format(value, fmt)


def _header(via: str, launch: str) -> None:
    print(f"\n{via} ({launch})")
    print("   N | launch->serving | serving->converged | CPU-s/peer to converge | RSS/peer | PSS/peer | idle CPU (cores) | pings/s/peer | SIGKILL->everyone knows | relay idle CPU | load avg")


def _row(n: int, f: Figures) -> None:
    relay = "" if f["relay_cpu"] is None else f"{f['relay_cpu']:6.3f}"
    print(
        f"{n:4d} | {f['serving']:13.1f} s | {_cell(f['converge'], '16.1f')} s | {f['cpu_to_converge']:22.2f} | {f['rss_mb']:5.0f} MB | {f['pss_mb']:5.0f} MB | {f['cpu_cores']:16.2f} | "
        f"{f['pings_per_peer_s']:12.1f} | {_cell(f['crash'], '21.1f')} s | {relay:>14} | {_load()}",
        flush=True,
    )


def _load() -> str:
    """The 1-minute load average: the machine is shared, so every figure is printed beside it."""
    return f"{os.getloadavg()[0]:.1f}"


async def run(sizes: list[int], ways: list[str], calls: int, budget: float, launch: str) -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mcpfed-bench-scale-") as home:
        print(f"scale benchmark: light peers on loopback, default timings; budget {budget:.0f} s")
        print(f"import floor (python + federation.node imported): {_import_floor_mb():.0f} MB RSS", flush=True)
        async with Fleet(Path(home), f"bench-{uuid.uuid4().hex[:8]}") as fleet, httpx.AsyncClient(trust_env=False, timeout=10) as http:
            relay = await fleet.start("relay", "--port", "0", "--home", str(Path(home) / "relay"))
            relay_url = await fleet.url_of(relay)
            for via in ways if sizes else []:
                _header(via, launch)
                for size in sizes:
                    if time.perf_counter() - started > budget:
                        print(f"   (budget spent: {via} N={size} and beyond skipped)")
                        break
                    _row(size, await _mesh_run(fleet, http, size, via, launch, relay if via == "relay" else None, relay_url))
                    await anyio.sleep(2)  # the killed fleet's records and tunnels fade before the next size
            if calls:
                per_thousand = await _relay_cost(fleet, relay, relay_url, calls)
                print(f"\nrelay CPU per 1,000 relayed echo calls: {per_thousand:.2f} s ({per_thousand:.2f} ms per call); load avg {_load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="10,25,50,100", help="mesh sizes, comma-separated ('' for none)")
    parser.add_argument("--via", default="mdns,relay", help="ways to meet: mdns, relay or both")
    parser.add_argument("--calls", type=int, default=1000, help="relayed calls for the relay's cost (0 to skip)")
    parser.add_argument("--budget", type=float, default=900, help="seconds after which the remaining sizes are skipped")
    parser.add_argument("--launch", choices=("fork", "spawn"), default="fork", help="fork: one `serve --copies N`; spawn: one process per peer")
    args = parser.parse_args()
    sizes = [int(s) for s in args.n.split(",") if s.strip()]
    anyio.run(run, sizes, [w.strip() for w in args.via.split(",") if w.strip()], args.calls, args.budget, args.launch)


if __name__ == "__main__":
    main()
