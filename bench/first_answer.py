"""What a new user's first answers look like on each embedded model: the figures the default was chosen on.

The tasks are the demo's own and `mcpfed ask`'s: a one-sentence summary of each
bundled note (the demo's map step: its prompts around 600 characters of the
note, 64 tokens, temperature 0.3), a two-sentence summary of those summaries
(the reduce step), and "What is the capital of France?" with `ask`'s defaults (256
tokens, temperature 0.7), each as a chat turn, over several seeds. An answer
*reads as an answer* when it ends at the model's end-of-turn rather than at
the token limit; the table counts those, the replies' median length and the
answers that name Paris. Speed is tokens per second of a 128-token
completion, median over the rounds, the models taking turns so that other
load on the machine slows both alike.

    python -m bench.first_answer [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import anyio

from examples.demo import MAP_PROMPT, NOTES, REDUCE_PROMPT, SUMMARISE
from servers.embedded_models import EMBEDDED_MODELS, model_path
from servers.llama_engine import ChatMessage, Completion, LlamaEngine

QUESTION = "What is the capital of France?"


@dataclass
class Figures:
    replies: list[Completion] = field(default_factory=list)
    capital: list[Completion] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    sample: str = ""


async def chat(engine: LlamaEngine, prompt: str, max_tokens: int, temperature: float, seed: int) -> Completion:
    return await engine.chat([ChatMessage("user", prompt)], max_tokens=max_tokens, temperature=temperature, seed=seed)


async def tasks(engine: LlamaEngine, seeds: int, figures: Figures) -> None:
    for seed in range(seeds):
        notes = sorted(NOTES.glob("*.md"))
        mapped = [await chat(engine, f"{MAP_PROMPT}\n\n{note.read_text()[:600]}\n\n{SUMMARISE}", 64, 0.3, seed) for note in notes]
        bullets = "\n".join(f"- {done.text.strip()}" for done in mapped)
        reduced = await chat(engine, f"{REDUCE_PROMPT}\n\n{bullets}", 64, 0.3, seed)
        figures.replies += [*mapped, reduced]
        figures.capital.append(await chat(engine, QUESTION, 256, 0.7, seed))
        figures.sample = figures.sample or reduced.text.strip()


async def run(seeds: int) -> None:
    figures = {name: Figures() for name in EMBEDDED_MODELS}
    for name, figure in figures.items():
        async with LlamaEngine(model_path(name), n_ctx=2048) as engine:
            await engine.wait_ready()
            await tasks(engine, seeds, figure)
    async with AsyncExitStack() as stack:  # both loaded, taking turns, so other load slows both alike
        engines = {name: await stack.enter_async_context(LlamaEngine(model_path(name), n_ctx=2048)) for name in EMBEDDED_MODELS}
        for round_ in range(seeds * 2):
            for name, engine in engines.items():
                await engine.wait_ready()
                done = await engine.complete("The history of the printing press begins", max_tokens=128, temperature=0.8, seed=round_)
                figures[name].rates.append(done.usage.tokens_per_s)
    print(f"\n{'model':<14}{'size MB':>8}{'ended at end-of-turn':>22}{'median tokens':>15}{'Paris':>8}{'tok/s':>8}")
    for name, figure in figures.items():
        stopped = sum(done.finish_reason == "stop" for done in figure.replies + figure.capital)
        total = len(figure.replies) + len(figure.capital)
        tokens = statistics.median(done.usage.completion_tokens for done in figure.replies + figure.capital)
        paris = sum("Paris" in done.text for done in figure.capital)
        size = model_path(name).stat().st_size / 1e6
        print(f"{name:<14}{size:>8.0f}{f'{stopped}/{total}':>22}{tokens:>15.0f}{f'{paris}/{len(figure.capital)}':>8}{statistics.median(figure.rates):>8.1f}")
    for name, figure in figures.items():
        print(f"\n{name}, the demo's answer (seed 0): {figure.sample!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="how many times each task runs, with seeds 0, 1, …")
    args = parser.parse_args()
    anyio.run(run, args.seeds)


if __name__ == "__main__":
    main()
