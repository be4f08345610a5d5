"""Multi-agent workflows over a `Mesh`: map-reduce, debate, pipeline.

Each workflow runs under one trace id and returns a `WorkflowResult`: the
final answer plus every step (which peer did what, tokens, time), which
`render_tree()` draws as the trace tree the demo prints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import anyio
from pydantic import BaseModel, Field
from rich.cells import cell_len

from federation.api import Answer, Mesh
from federation.client import TextCallback
from federation.trace import Trace

__all__ = ["PipelineStep", "WorkflowResult", "WorkflowStep", "debate", "map_reduce", "pipeline"]


class WorkflowStep(BaseModel):
    """One call a workflow made."""

    label: str
    peer: str
    peer_name: str
    kind: str = Field(default="ask", description="ask or tool")
    tokens_in: int = 0
    tokens_out: int = 0
    ms: float = 0.0
    output: str = ""

    @classmethod
    def of(cls, label: str, answer: Answer) -> WorkflowStep:
        return cls(label=label, peer=answer.peer, peer_name=answer.peer_name, tokens_in=answer.tokens_in, tokens_out=answer.tokens_out, ms=answer.ms, output=answer.text)


class WorkflowResult(BaseModel):
    workflow: str
    answer: str
    trace_id: str
    ms: float
    steps: list[WorkflowStep]

    def render_tree(self) -> str:
        """The trace as a tree: one line per step with peer, time and tokens, in aligned columns.

        Columns are padded by terminal cells, not characters, so wide (CJK,
        emoji) and combining characters in step labels or peer names keep
        the columns straight.
        """
        tokens = sum(s.tokens_in + s.tokens_out for s in self.steps)
        rows = [
            (
                "└─" if index == len(self.steps) - 1 else "├─",
                step.label,
                f"{step.peer_name} ({step.peer[:8]})",
                f"{step.ms:.0f} ms",
                f"{step.tokens_in}→{step.tokens_out} tok" if step.kind == "ask" else "tool",
            )
            for index, step in enumerate(self.steps)
        ]
        label_width, peer_width, ms_width = (max((cell_len(row[column]) for row in rows), default=0) for column in (1, 2, 3))
        lines = [f"trace {self.trace_id} · {self.workflow} · {self.ms / 1000:.2f} s · {tokens} tokens"]
        for branch, label, peer, ms, cost in rows:
            lines.append(f"{branch} {_pad(label, label_width)} → {_pad(peer, peer_width)}  {_pad(ms, ms_width, right=True)}  {cost}")
        return "\n".join(lines)


async def map_reduce(
    mesh: Mesh,
    chunks: Sequence[str],
    *,
    map_prompt: str,
    reduce_prompt: str,
    model: str | None = None,
    max_tokens: int = 96,
    temperature: float = 0.3,
    on_text: TextCallback | None = None,
    trace: Trace | None = None,
) -> WorkflowResult:
    """Map every chunk in parallel (the router spreads them over able peers), then reduce on one.

    `on_text` streams the reduce step's answer; `trace` joins a larger workflow's trace.
    """
    root, clock = trace or Trace(caller=mesh.node.peer_id), time.perf_counter()
    mapped: list[tuple[int, Answer]] = []

    async def map_one(index: int, chunk: str) -> None:
        mapped.append((index, await mesh.ask(f"{map_prompt}\n\n{chunk}", model=model, max_tokens=max_tokens, temperature=temperature, trace=root)))

    async with anyio.create_task_group() as task_group:
        for index, chunk in enumerate(chunks):
            task_group.start_soon(map_one, index, chunk)
    mapped.sort(key=lambda pair: pair[0])
    bullet_list = "\n".join(f"- {answer.text.strip()}" for _, answer in mapped)
    reduced = await mesh.ask(f"{reduce_prompt}\n\n{bullet_list}", model=model, max_tokens=max_tokens, temperature=temperature, trace=root, on_text=on_text)
    steps = [WorkflowStep.of(f"map {i + 1}", a) for i, a in mapped] + [WorkflowStep.of("reduce", reduced)]
    return WorkflowResult(workflow="map_reduce", answer=reduced.text, trace_id=root.trace_id, ms=_ms(clock), steps=steps)


async def debate(mesh: Mesh, question: str, *, n: int = 2, judge: str | None = None, model: str | None = None, max_tokens: int = 96) -> WorkflowResult:
    """`n` peers answer, each answer is critiqued by another peer, and a judge picks the best."""
    root, clock = Trace(caller=mesh.node.peer_id), time.perf_counter()
    answers: list[tuple[int, Answer]] = []

    async def answer_one(index: int) -> None:
        answers.append((index, await mesh.ask(question, model=model, max_tokens=max_tokens, temperature=0.9, trace=root)))

    async with anyio.create_task_group() as task_group:
        for index in range(n):
            task_group.start_soon(answer_one, index)
    answers.sort(key=lambda pair: pair[0])
    critiques: list[tuple[int, Answer]] = []

    async def critique(index: int, answer: Answer) -> None:
        prompt = f"Question: {question}\nAnswer: {answer.text.strip()}\nIn one sentence, what is wrong or missing in this answer?"
        critiques.append((index, await mesh.ask(prompt, model=model, max_tokens=max_tokens, trace=root)))

    async with anyio.create_task_group() as task_group:
        for index, answer in answers:
            task_group.start_soon(critique, index, answer)
    critiques.sort(key=lambda pair: pair[0])
    ballot = "\n".join(
        f"Answer {i + 1}: {a.text.strip()}\nCritique {i + 1}: {c.text.strip()}" for (i, a), (_, c) in zip(answers, critiques, strict=True)
    )
    verdict = await mesh.ask(
        f"Question: {question}\n{ballot}\nWhich answer is best? Reply with its number and one short reason.",
        peer=judge,
        model=model,
        max_tokens=max_tokens,
        temperature=0.2,
        trace=root,
    )
    steps = (
        [WorkflowStep.of(f"answer {i + 1}", a) for i, a in answers]
        + [WorkflowStep.of(f"critique {i + 1}", c) for i, c in critiques]
        + [WorkflowStep.of("judge", verdict)]
    )
    return WorkflowResult(workflow="debate", answer=verdict.text, trace_id=root.trace_id, ms=_ms(clock), steps=steps)


class PipelineStep(BaseModel):
    """One stage: a prompt for a model (`{input}` is the previous output) or a tool call on a peer."""

    label: str = ""
    prompt: str | None = None
    peer: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict, description="string values may contain {input}")
    model: str | None = None
    max_tokens: int = 128


async def pipeline(mesh: Mesh, steps: Sequence[PipelineStep], initial: str) -> WorkflowResult:
    """Run stages in order, each fed the previous stage's output; each on its chosen peer."""
    root, clock = Trace(caller=mesh.node.peer_id), time.perf_counter()
    current, done = initial, []
    for index, stage in enumerate(steps):
        label = stage.label or f"step {index + 1}"
        if stage.tool is not None:
            if stage.peer is None:
                raise ValueError(f"pipeline stage {label!r} calls tool {stage.tool!r} but names no peer")
            arguments = {k: v.replace("{input}", current) if isinstance(v, str) else v for k, v in stage.arguments.items()}
            result = await mesh.call(stage.peer, stage.tool, arguments, trace=root)
            current = _as_text(result.data)
            done.append(WorkflowStep(label=label, peer=result.peer, peer_name=result.peer_name, kind="tool", ms=result.ms, output=current))
        else:
            prompt = (stage.prompt or "{input}").replace("{input}", current)
            answer = await mesh.ask(prompt, peer=stage.peer, model=stage.model, max_tokens=stage.max_tokens, trace=root)
            current = answer.text
            done.append(WorkflowStep.of(label, answer))
    return WorkflowResult(workflow="pipeline", answer=current, trace_id=root.trace_id, ms=_ms(clock), steps=done)


def _as_text(data: Any) -> str:
    """A tool's structured result as text a model can read: the text-like field, or each item of its list."""
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        return "\n".join(_as_text(item) for item in data)
    if isinstance(data, dict):
        if isinstance(data.get("snippet"), str):
            return f"{data.get('title', '')}: {data['snippet']}".strip(": ")
        for key in ("text", "result", "answer", "content"):
            if key in data:
                return _as_text(data[key])
        lists = [value for value in data.values() if isinstance(value, list)]
        if lists:
            return _as_text(lists[0])
        return json.dumps(data, ensure_ascii=False)
    return str(data)


def _pad(text: str, width: int, *, right: bool = False) -> str:
    """`text` padded with spaces to `width` terminal cells (left-aligned, or right-aligned)."""
    fill = " " * max(0, width - cell_len(text))
    return fill + text if right else text + fill


def _ms(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 1)
