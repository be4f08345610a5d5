"""Command-line plumbing shared by the example scripts: how to find the mesh."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from federation import Mesh, WorkflowResult


def mesh_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--peer", action="append", default=[], metavar="URL", help="a peer's MCP URL (repeatable); mDNS finds the rest")
    parser.add_argument("--mesh", default=None, help="mesh to join (peers of other meshes are ignored)")
    parser.add_argument("--wait", type=int, default=1, metavar="N", help="wait for N model peers before starting")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for them")
    return parser


def join(args: argparse.Namespace, **options: Any) -> AbstractAsyncContextManager[Mesh]:
    return Mesh.connect(peers=args.peer, mesh=args.mesh, **options)


async def run_workflow(args: argparse.Namespace, workflow: Callable[[Mesh], Awaitable[WorkflowResult]], *, peers: int, models_only: bool = True) -> str:
    """Join, wait for `peers` peers, run `workflow`, print its answer and trace tree; return the answer."""
    async with join(args) as mesh:
        await mesh.wait_for_peers(peers, timeout=args.timeout, model=models_only)
        result = await workflow(mesh)
    print(result.answer.strip())
    print(result.render_tree())
    return result.answer
