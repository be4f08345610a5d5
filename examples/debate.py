"""A debate: N peers answer, each answer is critiqued, and a judge picks the best.

    python -m examples.debate [--peer URL]... [--mesh NAME] [--question TEXT]
"""

from __future__ import annotations

from examples._common import mesh_arguments, run_script, run_workflow
from federation import Mesh, WorkflowResult, debate


async def run(argv: list[str] | None = None) -> str:
    parser = mesh_arguments(__doc__.splitlines()[0])
    parser.add_argument("--question", default="Why do local models matter?")
    parser.add_argument("-n", type=int, default=2, help="how many answers")
    args = parser.parse_args(argv)

    async def workflow(mesh: Mesh) -> WorkflowResult:
        return await debate(mesh, args.question, n=args.n, max_tokens=40)

    return await run_workflow(args, workflow, peers=args.wait)


def main(argv: list[str] | None = None) -> None:
    run_script(run, argv)


if __name__ == "__main__":
    main()
