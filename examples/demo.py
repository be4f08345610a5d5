"""`make demo`: three peers find each other over mDNS and cooperate on one answer.

Starts three real `mcpfed serve` processes on loopback — two model peers
(alice, bob: the default embedded model, or `--model`) and a notes peer with the bundled
Markdown notes — in a mesh of its own, joins that mesh from this script,
waits until every peer is seen, then:

1. looks the topic up on the notes peer (`search_notes`, `read_note`: the
   notes never leave their peer, only answers travel),
2. map-reduces a summary of the notes across the two model peers, the final
   answer streaming to the terminal token by token,
3. prints a trace tree of who served what, with tokens and times,

and stops everything it started. A peer that fails to start is reported with
the end of what it wrote to stderr.

    python -m examples.demo [--topic "relay mdns"] [--model default|gemma3-270m|PATH]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from textwrap import indent

import anyio
from rich.console import Console

from federation import Mesh, WorkflowResult, WorkflowStep, map_reduce

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "examples" / "notes"
console = Console(stderr=True, soft_wrap=True)  # long lines (URLs) stay whole when piped to a file
# Small instruction-tuned models follow an instruction placed after the text far
# more often than one placed before it (docs/model-peer.md has the figures).
MAP_PROMPT = "Here is a note."
SUMMARISE = "Summarise this note in one sentence."
REDUCE_PROMPT = "Write a two-sentence summary of these points:"


def stderr_tail(log: Path, lines: int = 10) -> str:
    """The last lines a peer wrote to stderr: why it stopped, in its own words."""
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(it wrote nothing to stderr)"


@contextmanager
def peers(mesh: str, home: Path, model: str) -> Iterator[list[str]]:
    """Start the three peers as processes; yield their MCP URLs; stop them (SIGINT, then kill).

    Each peer's stderr goes to `<home>/<name>.log`, so a peer that fails to start can say why.
    """
    specs = [
        ("alice", ["--model", model, "--ctx", "2048"]),
        ("bob", ["--model", model, "--ctx", "2048"]),
        ("notes", ["--model", "none", "--notes", str(NOTES)]),
    ]
    processes: list[subprocess.Popen[str]] = []
    try:
        with console.status("starting three peers (two models, one notes)…", spinner="dots"):
            for name, extra in specs:
                command = [sys.executable, "-m", "federation.cli", "serve", "--port", "0", "--name", name, "--mesh", mesh, *extra]
                env = os.environ | {"MCPFED_HOME": str(home / name)}
                with (home / f"{name}.log").open("w") as log:
                    processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True))
            urls = [process.stdout.readline().strip() if process.stdout is not None else "" for process in processes]
        failed = [name for (name, _), url in zip(specs, urls, strict=True) if not url]
        if failed:
            reports = [f"peer {name} failed to start:\n{indent(stderr_tail(home / f'{name}.log'), '  ')}" for name in failed]
            raise SystemExit("\n".join(reports))
        console.print(f"[green]✓[/] peers up: {', '.join(urls)}")
        yield urls
    finally:
        with console.status("stopping the peers…", spinner="dots"):
            for process in processes:
                process.send_signal(signal.SIGINT)
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def cooperate(mesh_name: str, topic: str, home: Path) -> WorkflowResult:
    async with Mesh.connect(mesh=mesh_name, home=home, name="demo") as mesh:
        with console.status("waiting for the peers to find each other over mDNS…", spinner="dots"):
            started = time.perf_counter()
            await mesh.wait_for_peers(3, timeout=60)
            await mesh.wait_for_peers(2, timeout=60, model=True)
        seen = ", ".join(f"{p.name} ({p.via})" for p in mesh.peers())
        console.print(f"[green]✓[/] all peers seen in {time.perf_counter() - started:.1f} s: {seen}")

        lookup_steps: list[WorkflowStep] = []
        with console.status(f"searching the notes peer for {topic!r}…", spinner="dots"):
            found = await mesh.call("notes", "search_notes", {"query": topic, "limit": 3})
            lookup_steps.append(WorkflowStep(label="search_notes", peer=found.peer, peer_name=found.peer_name, kind="tool", ms=found.ms))
            chunks = []
            for hit in found.data["hits"]:
                note = await mesh.call("notes", "read_note", {"path": hit["path"]})
                lookup_steps.append(WorkflowStep(label="read_note", peer=note.peer, peer_name=note.peer_name, kind="tool", ms=note.ms))
                chunks.append(note.data["text"][:600])
        console.print(f"[green]✓[/] {len(chunks)} notes found; summarising across the model peers:\n")

        async def stream(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        summary = await map_reduce(
            mesh,
            [f"{chunk}\n\n{SUMMARISE}" for chunk in chunks],
            map_prompt=MAP_PROMPT,
            reduce_prompt=REDUCE_PROMPT,
            max_tokens=96,  # the map steps end on their own; the reduce gets room to finish its sentences
            on_text=stream,
        )
        sys.stdout.write("\n\n")
        return summary.model_copy(update={"workflow": "notes → map_reduce", "steps": lookup_steps + summary.steps})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Three peers cooperate on one answer (mDNS on loopback).")
    parser.add_argument("--topic", default="relay mdns", help="what to look up in the notes")
    parser.add_argument("--model", default="default", help="what alice and bob serve: 'default', an embedded model's name, or a .gguf path")
    args = parser.parse_args(argv)
    mesh_name = f"demo-{secrets.token_hex(3)}"  # a mesh of our own: other peers on this machine stay out
    with tempfile.TemporaryDirectory(prefix="mcpfed-demo-") as tmp, peers(mesh_name, Path(tmp), args.model):
        result = anyio.run(cooperate, mesh_name, args.topic, Path(tmp))
    print(result.render_tree())


if __name__ == "__main__":
    main()
