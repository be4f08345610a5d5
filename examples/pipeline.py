"""A pipeline across peers: look a topic up on the notes peer, then have a model peer explain it.

    python -m examples.pipeline [--peer URL]... [--notes-peer NAME] [--topic TEXT]
"""

from __future__ import annotations

import anyio

from examples._common import join, mesh_arguments
from federation import PipelineStep, pipeline


async def run(argv: list[str] | None = None) -> str:
    parser = mesh_arguments(__doc__.splitlines()[0])
    parser.add_argument("--notes-peer", default="notes", help="name of the peer serving search_notes")
    parser.add_argument("--topic", default="relay")
    args = parser.parse_args(argv)
    steps = [
        PipelineStep(label="search notes", peer=args.notes_peer, tool="search_notes", arguments={"query": "{input}", "limit": 2}),
        PipelineStep(label="explain", prompt="Explain this in one sentence:\n{input}", max_tokens=48),
    ]
    async with join(args) as mesh:
        await mesh.wait_for_peers(args.wait + 1, timeout=args.timeout)
        result = await pipeline(mesh, steps, args.topic)
    print(result.answer.strip())
    print(result.render_tree())
    return result.answer


def main(argv: list[str] | None = None) -> None:
    anyio.run(run, argv)


if __name__ == "__main__":
    main()
