"""Map-reduce over the mesh: summarise each chunk on whichever peer is free, then combine.

    python -m examples.map_reduce [--peer URL]... [--mesh NAME]
"""

from __future__ import annotations

from examples._common import mesh_arguments, run_script, run_workflow
from federation import Mesh, WorkflowResult, map_reduce

CHUNKS = [
    "mDNS lets machines on one LAN announce services by multicast, with no server to configure.",
    "A relay keeps one outbound WebSocket per peer, so peers behind NAT stay reachable by URL.",
    "MCP is a protocol for tools: a client lists a server's tools and calls them with JSON arguments.",
]


async def run(argv: list[str] | None = None) -> str:
    args = mesh_arguments(__doc__.splitlines()[0]).parse_args(argv)

    async def workflow(mesh: Mesh) -> WorkflowResult:
        return await map_reduce(mesh, CHUNKS, map_prompt="Summarise in one short sentence:", reduce_prompt="Combine these points into one sentence:", max_tokens=48)

    return await run_workflow(args, workflow, peers=args.wait)


def main(argv: list[str] | None = None) -> None:
    run_script(run, argv)


if __name__ == "__main__":
    main()
