"""Command-line plumbing shared by the example scripts: how to find the mesh."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from federation import FederationError, Mesh, WorkflowResult


def mesh_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--peer", action="append", default=[], metavar="URL", help="a peer's MCP URL (repeatable; it must be admitted, or the script stops and says why); mDNS finds the rest")
    parser.add_argument("--mesh", default=None, help="mesh to join (peers of other meshes are ignored)")
    parser.add_argument("--wait", type=int, default=1, metavar="N", help="wait for N model peers before starting")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for them")
    return parser


def join(args: argparse.Namespace, **options: Any) -> AbstractAsyncContextManager[Mesh]:
    """The mesh, once every `--peer` is admitted (`Mesh.connect` raises `PeerError` saying why one is not)."""
    return Mesh.connect(peers=args.peer, mesh=args.mesh, **options)


def run_script(run: Callable[[list[str] | None], Awaitable[str]], argv: list[str] | None) -> None:
    """Run an example; a mesh problem (a named peer refused, nobody answering) is one line on stderr and exit 1."""
    try:
        anyio.run(run, argv)
    except FederationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


async def run_workflow(args: argparse.Namespace, workflow: Callable[[Mesh], Awaitable[WorkflowResult]], *, peers: int, models_only: bool = True) -> str:
    """Join, wait for `peers` peers, run `workflow`, print its answer and trace tree; return the answer."""
    async with join(args) as mesh:
        await mesh.wait_for_peers(peers, timeout=args.timeout, model=models_only)
        result = await workflow(mesh)
    print(result.answer.strip())
    print(result.render_tree())
    return result.answer
