"""A pipeline across peers: look a topic up on the notes peer, then have a model peer explain it.

    python -m examples.pipeline [--peer URL]... [--notes-peer NAME] [--topic TEXT]
"""

from __future__ import annotations

from examples._common import mesh_arguments, run_script, run_workflow
from federation import Mesh, PipelineStep, WorkflowResult, pipeline


async def run(argv: list[str] | None = None) -> str:
    parser = mesh_arguments(__doc__.splitlines()[0])
    parser.add_argument("--notes-peer", default="notes", help="name of the peer serving search_notes")
    parser.add_argument("--topic", default="relay")
    args = parser.parse_args(argv)
    steps = [
        PipelineStep(label="search notes", peer=args.notes_peer, tool="search_notes", arguments={"query": "{input}", "limit": 2}),
        PipelineStep(label="explain", prompt="Explain this in one sentence:\n{input}", max_tokens=48),
    ]
    async def workflow(mesh: Mesh) -> WorkflowResult:
        return await pipeline(mesh, steps, args.topic)

    return await run_workflow(args, workflow, peers=args.wait + 1, models_only=False)


def main(argv: list[str] | None = None) -> None:
    run_script(run, argv)


if __name__ == "__main__":
    main()
