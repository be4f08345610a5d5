"""Pulling a model from 1, 2 and 3 holders, against a plain HTTP download of the same file, in one run.

    python -m bench.pull [--model smollm2-135m] [--rounds 2]

The holders, the puller and the plain file server are all on loopback in one
process, so on this 2-core machine they share the same cores: more holders
add no bandwidth here, only work (every chunk is hashed on arrival and the
whole file again at the end). The figure to read is what the pull costs over
a plain download; the gain from several holders shows only where each holder
has its own disk and network link (a LAN), which the goal is stated for: the
second to n-th machine gets the model from the mesh at least as fast as from
one server, with the origin sending about one copy.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

from federation.listen import serve_app
from federation.node import Node
from federation.pull.mesh import pull_model
from federation.settings import PeerSettings
from servers.embedded_models import model_path


async def plain_download(url: str, target: Path) -> float:
    """Seconds to stream `url` into `target` (the baseline: one server, no hashing)."""
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as http, http.stream("GET", url) as response:
        with target.open("wb") as out:
            async for block in response.aiter_bytes(1 << 20):
                out.write(block)
    return time.perf_counter() - started


async def main(model: str, rounds: int) -> None:
    source = await anyio.to_thread.run_sync(model_path, model)
    size_mb = source.stat().st_size / 1e6
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        app = Starlette(routes=[Route("/model.gguf", lambda request: FileResponse(source))])
        async with AsyncExitStack() as stack:
            file_url = await stack.enter_async_context(serve_app(app)) + "/model.gguf"
            holders = []
            for number in range(3):
                home = root / f"holder{number}"
                (home / "models").mkdir(parents=True)
                (home / "models" / source.name).symlink_to(source)
                holders.append(await stack.enter_async_context(Node(PeerSettings(name=f"holder{number}", port=0, home=home, model=None, mdns="off"))))
            while not all(node.card().shares for node in holders):
                await anyio.sleep(0.1)
            sha256 = holders[0].model_store.shared()[0].sha256
            times: dict[str, list[float]] = {"plain HTTP, 1 server": []}
            for count in (1, 2, 3):
                times[f"pull from {count} holder(s)"] = []
            for round_number in range(rounds):
                times["plain HTTP, 1 server"].append(await plain_download(file_url, root / f"plain{round_number}.gguf"))
                for count in (1, 2, 3):
                    home = root / f"puller{round_number}-{count}"
                    async with Node(PeerSettings(name="puller", port=0, home=home, model=None, mdns="off")) as puller:
                        for node in holders[:count]:
                            await puller.add_peer(node.mcp_url)
                        started = time.perf_counter()
                        await pull_model(puller, f"sha256:{sha256}", home / "models")
                        times[f"pull from {count} holder(s)"].append(time.perf_counter() - started)
    base = statistics.median(times["plain HTTP, 1 server"])
    print(f"\n{model}: {size_mb:.0f} MB, 4 MiB chunks, {rounds} rounds; everything on loopback sharing this machine's cores")
    print(f"{'variant':<28}{'median s':>10}{'MB/s':>8}{'× plain':>9}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<28}{median:>10.2f}{size_mb / median:>8.0f}{median / base:>8.2f}×")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    anyio.run(main, options.model, options.rounds)
