"""How fast peers find each other, notice a leave or a crash, and what a mesh of light peers costs.

    python -m bench.discovery                 # everything (about 2-3 minutes on 2 cores)
    python -m bench.discovery --sizes 20      # a smaller mesh
    python -m bench.discovery --sizes ''      # skip the mesh-size runs

Measured, all on loopback mDNS with the product's default timings (health
ping every 1 s, 3 misses = dead), each in a private mesh:

1. start -> visible: a peer's `Node` is up (serving, announced) until another
   peer has fetched, verified and admitted its card; in-process, repeated.
   Baselines from the same run: a raw zeroconf browser seeing a raw
   registration, with `cooperating_responders=True` (what we use) and with
   the default conflict probing.
2. clean leave: the leaving peer starts stopping until the observer has dropped it (mDNS goodbye).
2b. the CPU cost of one health ping (both ends), httpx against our lean probe.
3. crash: a peer *process* is SIGKILLed until the observer marks it dead (and suspect).
4. N light peers (`mcpfed serve --model none`), each its own process, all
   launched at once: time until every peer lists every other as up (from
   launch, and from the last one serving), resident memory per peer, and the
   CPU the idle mesh burns (health pings).

Everything started is stopped in `finally`; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from bench._fleet import Fleet, cpu_seconds, rss_bytes
from federation.http1 import ConnectionPool, Timeouts
from federation.node import Node
from federation.settings import PeerSettings

_DEADLINE = 60.0
_RAW_TYPE = "_mcpfed-bench._tcp.local."
_IDLE_SECONDS = 5.0


def _ms(seconds: list[float]) -> str:
    values = sorted(s * 1000 for s in seconds)
    return f"median {statistics.median(values):7.1f} ms   min {values[0]:7.1f}   max {values[-1]:7.1f}   (n={len(values)})"


async def _until(check: Callable[[], bool], what: str, deadline: float = _DEADLINE, step: float = 0.001) -> float:
    """Seconds until `check()` holds (polled every `step`)."""
    started = time.perf_counter()
    with anyio.move_on_after(deadline):
        while not check():
            await anyio.sleep(step)
        return time.perf_counter() - started
    raise TimeoutError(f"not within {deadline} s: {what}")


class Bench:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.mesh = f"bench-{uuid.uuid4().hex[:8]}"
        self.count = 0

    def settings(self, **overrides: Any) -> PeerSettings:
        self.count += 1
        name = str(overrides.pop("name", f"p{self.count}"))
        values: dict[str, Any] = {"name": name, "port": 0, "home": self.home / name, "model": None, "mesh": self.mesh, "mdns": "auto"}
        return PeerSettings(**(values | overrides))

    # -- 1. start -> visible -----------------------------------------------
    async def visible(self, reps: int) -> list[float]:
        times = []
        async with Node(self.settings(name="observer")) as observer:
            for i in range(reps):
                async with Node(self.settings(name=f"newcomer{i}")) as newcomer:
                    times.append(await _until(lambda: newcomer.peer_id in observer.peers, "newcomer admitted"))
                await _until(lambda: newcomer.peer_id not in observer.peers, "newcomer gone")
        return times

    @staticmethod
    async def raw_sighting(reps: int, *, cooperating: bool) -> list[float]:
        times: list[float] = []
        seen: dict[str, float] = {}

        def on_change(zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange) -> None:
            if state_change is ServiceStateChange.Added:
                seen.setdefault(name, time.perf_counter())

        announcer = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        listener = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        browser = AsyncServiceBrowser(listener.zeroconf, _RAW_TYPE, handlers=[on_change])
        try:
            for i in range(reps):
                name = f"raw{uuid.uuid4().hex[:8]}-{i}.{_RAW_TYPE}"
                info = AsyncServiceInfo(_RAW_TYPE, name, addresses=[socket.inet_aton("127.0.0.1")], port=9, properties={"i": str(i)}, server=f"raw{i}-{os.getpid()}.local.")
                started = time.perf_counter()
                await announcer.async_register_service(info, cooperating_responders=cooperating)
                await _until(lambda: name in seen, "raw service seen")  # noqa: B023 - awaited in this iteration
                times.append(seen[name] - started)
                await announcer.async_unregister_service(info)
        finally:
            await browser.async_cancel()
            await announcer.async_close()
            await listener.async_close()
        return times

    # -- ping cost ------------------------------------------------------------
    async def ping_cost(self, pings: int) -> tuple[float, float]:
        """CPU seconds per health ping, both ends in this process: (httpx, the lean pool the health monitor uses)."""
        async with Node(self.settings(name="pinged", mdns="off")) as pinged, httpx.AsyncClient(trust_env=False) as http:
            url = pinged.url + "/health"
            pool = ConnectionPool(max_per_origin=1, max_idle_per_origin=1, keepalive_expiry=30)
            timeouts = Timeouts(connect=5, read=5, pool=5)

            async def cost(ping: Callable[[], Awaitable[object]]) -> float:
                for _ in range(50):
                    await ping()
                started = time.process_time()
                for _ in range(pings):
                    await ping()
                return (time.process_time() - started) / pings

            try:
                return await cost(lambda: http.get(url)), await cost(lambda: pool.fetch(b"GET", url, [], timeouts, limit=65536))
            finally:
                await pool.aclose()

    # -- 2. clean leave -----------------------------------------------------
    async def leave(self, reps: int) -> list[float]:
        """From the moment the leaver starts stopping until the observer's `peer_down` event."""
        times = []
        async with Node(self.settings(name="observer")) as observer:
            for i in range(reps):
                async with observer.events.subscribe() as events:
                    async with Node(self.settings(name=f"leaver{i}")) as leaver:
                        await _until(lambda: leaver.peer_id in observer.peers, "leaver admitted")
                        started = time.time()
                    with anyio.fail_after(_DEADLINE):
                        async for event in events:
                            if event.kind == "peer_down" and event.data["id"] == leaver.peer_id:
                                times.append(event.at - started)
                                break
        return times

    # -- 3. crash -------------------------------------------------------------
    async def crash(self, reps: int) -> tuple[list[float], list[float], list[float]]:
        """(launch -> visible, SIGKILL -> suspect, SIGKILL -> dead) for a peer process."""
        cold, suspect, dead = [], [], []
        async with Node(self.settings(name="observer")) as observer, Fleet(self.home, self.mesh) as fleet:
            for i in range(reps):
                launched = time.perf_counter()
                victim = await fleet.launch(f"victim{i}")
                url = await fleet.url_of(victim)
                await _until(lambda: any(p.url == url for p in observer.peers), "victim admitted")  # noqa: B023 - awaited in this iteration
                cold.append(time.perf_counter() - launched)
                peer_id = next(p.id for p in observer.peers if p.url == url)
                killed = time.perf_counter()
                victim.kill()
                await _until(lambda: observer.peers.get(peer_id).status != "up", "victim suspect")  # type: ignore[union-attr]  # noqa: B023 - awaited in this iteration
                suspect.append(time.perf_counter() - killed)
                await _until(lambda: observer.peers.get(peer_id).status == "dead", "victim dead")  # type: ignore[union-attr]  # noqa: B023 - awaited in this iteration
                dead.append(time.perf_counter() - killed)
        return cold, suspect, dead

    # -- 4. N light peers ---------------------------------------------------
    async def mesh_of(self, size: int) -> dict[str, float]:
        async with Fleet(self.home, self.mesh) as fleet, httpx.AsyncClient(trust_env=False, timeout=5) as http:
            launched = time.perf_counter()
            processes = [await fleet.launch(f"m{size}-{i}") for i in range(size)]
            urls: list[str] = [""] * size

            async def read(i: int) -> None:
                urls[i] = await fleet.url_of(processes[i])

            async with anyio.create_task_group() as task_group:
                for i in range(size):
                    task_group.start_soon(read, i)
            all_serving = time.perf_counter()
            complete = [False] * size

            async def check(i: int) -> None:
                try:
                    peers = (await http.get(urls[i].removesuffix("/mcp") + "/peers")).json()["peers"]
                except (httpx.HTTPError, ValueError, KeyError):
                    return
                complete[i] = len(peers) == size - 1

            with anyio.fail_after(_DEADLINE * 3):
                while not all(complete):
                    async with anyio.create_task_group() as task_group:
                        for i in range(size):
                            if not complete[i]:
                                task_group.start_soon(check, i)
                    await anyio.sleep(0.1)
            meshed = time.perf_counter()
            rss = [rss_bytes(p.pid) for p in processes]
            cpu_before = sum(cpu_seconds(p.pid) for p in processes)
            await anyio.sleep(_IDLE_SECONDS)
            cpu = (sum(cpu_seconds(p.pid) for p in processes) - cpu_before) / _IDLE_SECONDS
            statuses = [p["status"] for url in urls for p in (await http.get(url.removesuffix("/mcp") + "/peers")).json()["peers"]]
        return {
            "launch_to_mesh": meshed - launched,
            "serving_to_mesh": meshed - all_serving,
            "rss_mb": statistics.median(rss) / 1e6,
            "cpu_cores": cpu,
            "up_share": statuses.count("up") / max(1, len(statuses)),
        }


async def run(reps: int, sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="mcpfed-bench-") as home:
        bench = Bench(Path(home))
        print(f"discovery benchmark: loopback mDNS, default timings, {os.cpu_count()} CPU cores\n")
        cooperating = await bench.raw_sighting(reps, cooperating=True)
        probing = await bench.raw_sighting(max(3, reps // 3), cooperating=False)
        visible = await bench.visible(reps)
        print("1. start -> visible and verified at another peer (in-process)")
        print(f"   raw zeroconf, probing        {_ms(probing)}")
        print(f"   raw zeroconf, cooperating    {_ms(cooperating)}")
        print(f"   mcp-fed, card verified       {_ms(visible)}")
        print(f"   -> {statistics.median(probing) / statistics.median(visible):.0f}x faster than a probed registration; "
              f"verification adds {1000 * (statistics.median(visible) - statistics.median(cooperating)):.1f} ms over a raw sighting\n")
        left = await bench.leave(reps)
        print(f"2. clean leave -> dropped       {_ms(left)}\n")
        with_httpx, with_probe = await bench.ping_cost(2000)
        print(f"2b. one health ping, CPU of both ends: httpx {with_httpx * 1000:.3f} ms, lean pool {with_probe * 1000:.3f} ms "
              f"({with_httpx / with_probe:.1f}x less); a peer pinging 49 others each second spends {49 * with_probe * 100:.1f}% of a core\n")
        cold, suspect, dead = await bench.crash(max(2, reps // 3))
        print("3. peer process (python start-up included)")
        print(f"   launch -> visible            {_ms(cold)}")
        print(f"   SIGKILL -> suspect           {_ms(suspect)}")
        print(f"   SIGKILL -> dead              {_ms(dead)}\n")
        meshes = {}
        for size in sizes:
            meshes[size] = figures = await bench.mesh_of(size)
            print(f"4. {size} light peers, one process each, launched together")
            print(f"   launch -> everyone lists everyone       {figures['launch_to_mesh']:6.1f} s  (Python start-up of {size} processes included)")
            print(f"   last serving -> everyone lists everyone {figures['serving_to_mesh']:6.1f} s")
            print(f"   memory per peer (RSS, median)           {figures['rss_mb']:6.0f} MB")
            print(f"   idle mesh CPU (pings, timers)           {figures['cpu_cores']:6.2f} cores = {100 * figures['cpu_cores'] / size:.1f}% of a core per peer")
            print(f"   entries 'up' after {_IDLE_SECONDS:g} s idle           {100 * figures['up_share']:6.1f} %  (the rest suspect/dead: pings late on a busy CPU)\n")
        crash_s = statistics.median(dead)
        print("anchors (other projects, as reported):")
        print(f"   exo announces every 1 s, times out a peer after 30 s -> crash noticed here in {crash_s:.1f} s ({30 / crash_s:.0f}x sooner)")
        print(f"   LocalAI announces every 20 s -> a new peer is visible here in {1000 * statistics.median(visible):.0f} ms")
        print(f"   mcp-mesh took 22 s to notice a SIGKILL -> {crash_s:.1f} s here ({22 / crash_s:.0f}x sooner)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9, help="repetitions of the timing runs")
    parser.add_argument("--sizes", default="20,50", help="mesh sizes to run, comma-separated ('' for none)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    anyio.run(run, args.reps, sizes)


if __name__ == "__main__":
    main()
