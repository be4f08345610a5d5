"""The llama.cpp engine on the real embedded models: tokens, usage, limits, the fair queue, cancellation, loading, end of turn."""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from servers.embedded_models import model_path
from servers.gguf_file import sha256_of
from servers.llama_engine import (
    ChatMessage,
    Completion,
    EngineState,
    LlamaEngine,
    ModelUnavailable,
    RequestRejected,
    default_threads,
)
from tests.support.models import BASE_MODEL
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio

N_CTX = 512


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaEngine]:
    """One loaded model for the module; each test leaves it idle."""
    async with LlamaEngine(model_path(BASE_MODEL), n_ctx=N_CTX) as loaded:
        await loaded.wait_ready()
        yield loaded


class Pieces(list[str]):
    """Collects streamed text, as an `on_token` callback."""

    async def __call__(self, text: str) -> None:
        self.append(text)


async def test_usage_counts_tokens_even_when_a_character_spans_several(engine: LlamaEngine) -> None:
    pieces = Pieces()
    # Mathematical Fraktur letters are not in Gemma's vocabulary: each one is several byte tokens.
    done = await engine.complete("𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝔘𝔫𝔦", max_tokens=16, temperature=0.0, on_token=pieces)
    assert len(pieces) < 16, "precondition: some characters took more than one token"
    assert done.finish_reason == "length"
    assert done.usage.completion_tokens == 16
    assert "".join(pieces) == done.text
    assert "\ufffd" not in done.text  # no broken characters were streamed


async def test_usage_reports_prompt_tokens_time_and_rate(engine: LlamaEngine) -> None:
    done = await engine.complete("The quick brown fox", max_tokens=6, seed=3)
    assert done.usage.prompt_tokens == 5  # <bos> + four words
    assert done.usage.total_ms > 0
    assert math.isclose(done.usage.tokens_per_s, done.usage.completion_tokens / (done.usage.total_ms / 1000), rel_tol=0.05)


async def test_stop_string_ends_generation_and_is_never_streamed(engine: LlamaEngine) -> None:
    pieces = Pieces()
    done = await engine.complete("Count: 1, 2, 3,", max_tokens=40, temperature=0.0, stop=[" 7"], on_token=pieces)
    assert done.finish_reason == "stop"
    assert done.text == " 4, 5, 6,"
    assert "".join(pieces) == done.text


async def test_a_slow_reader_gets_what_accumulated_in_one_piece(engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = Pieces()
    generated = threading.Event()
    generate = engine._generate_sync

    def generate_then_say_so(*args: Any) -> Completion:
        done = generate(*args)
        generated.set()  # every token has been handed to the event loop by now
        return done

    monkeypatch.setattr(engine, "_generate_sync", generate_then_say_so)

    async def slow_reader(text: str) -> None:
        await pieces(text)
        if len(pieces) == 1:  # busy with the first piece until the model has made all twelve tokens
            await wait_until(generated.is_set, timeout=120)  # a liveness bound: a loaded machine is slow, not wrong

    done = await engine.complete("Count: 1, 2, 3,", max_tokens=12, temperature=0.0, on_token=slow_reader)
    assert done.usage.completion_tokens == 12
    assert len(pieces) <= 2, "what came while the reader was busy arrives as one piece, not one per token"
    assert "".join(pieces) == done.text


async def test_same_seed_gives_the_same_text(engine: LlamaEngine) -> None:
    first = await engine.complete("Once upon a time", max_tokens=8, temperature=1.0, seed=42)
    second = await engine.complete("Once upon a time", max_tokens=8, temperature=1.0, seed=42)
    assert first.text == second.text


async def test_reply_is_cut_where_the_context_window_ends(engine: LlamaEngine) -> None:
    prompt = "one two three four five six seven eight nine ten " * 9  # ~90 words, under N_CTX tokens
    done = await engine.complete(prompt * 5, max_tokens=N_CTX - 1, temperature=0.0)
    used = done.usage.prompt_tokens + done.usage.completion_tokens
    assert used == N_CTX if done.finish_reason == "length" else used < N_CTX


@pytest.mark.parametrize("max_tokens", [0, -5])
async def test_max_tokens_below_one_is_refused(engine: LlamaEngine, max_tokens: int) -> None:
    with pytest.raises(RequestRejected, match="at least 1"):
        await engine.complete("hi", max_tokens=max_tokens)


async def test_max_tokens_above_the_context_is_refused_with_the_flag_to_change(engine: LlamaEngine) -> None:
    with pytest.raises(RequestRejected, match=rf"larger than the context window \({N_CTX} tokens\).*--ctx"):
        await engine.complete("hi", max_tokens=N_CTX + 1)


async def test_prompt_longer_than_the_context_is_refused_with_its_size(engine: LlamaEngine) -> None:
    with pytest.raises(RequestRejected, match=rf"the prompt is \d+ tokens but the context window is {N_CTX}"):
        await engine.complete("word " * N_CTX, max_tokens=4)
    assert engine.in_flight == 0


async def test_waiting_requests_are_served_in_arrival_order(engine: LlamaEngine) -> None:
    finished: list[str] = []

    async def ask(label: str, max_tokens: int) -> None:
        await engine.complete(f"{label}:", max_tokens=max_tokens, seed=1)
        finished.append(label)

    async with anyio.create_task_group() as group:
        group.start_soon(ask, "first", 24)
        await wait_until(lambda: engine.in_flight == 1)
        for position, label in enumerate(["second", "third", "fourth"], start=1):
            group.start_soon(ask, label, 2)
            await wait_until(lambda: engine.queued == position)  # noqa: B023 - awaited in this iteration
    assert finished == ["first", "second", "third", "fourth"]
    assert (engine.in_flight, engine.queued) == (0, 0)


STORY = "Tell me a long story about the sea."


async def test_cancelling_a_running_request_stops_it_and_frees_the_worker(engine: LlamaEngine) -> None:
    pieces = Pieces()
    served = engine.requests_served
    with anyio.CancelScope() as scope:

        async def cancel_after_three(text: str) -> None:
            await pieces(text)
            if len(pieces) == 3:
                scope.cancel()

        await engine.complete(STORY, max_tokens=200, seed=5, on_token=cancel_after_three)
    assert scope.cancelled_caught
    assert engine.in_flight == 0
    # What the context holds is exactly what the worker evaluated: the prompt and the tokens made before it stopped.
    made = engine._llama.n_tokens - len(engine._llama.tokenize(STORY.encode(), add_bos=True, special=True))
    assert made <= 8, f"the worker made {made} tokens; it should stop within a token or two of the third"
    assert engine.requests_served == served, "a cancelled request is not counted as served"
    done = await engine.complete("Hello", max_tokens=3)
    assert done.usage.completion_tokens == 3


async def test_cancelled_waiting_request_is_dropped_and_never_runs(engine: LlamaEngine) -> None:
    started_waiter = Pieces()
    results: list[Completion] = []

    async def long_request() -> None:
        results.append(await engine.complete("A long list of animals:", max_tokens=48, seed=2))

    async with anyio.create_task_group() as group:
        group.start_soon(long_request)
        await wait_until(lambda: engine.in_flight == 1)
        with anyio.CancelScope() as waiter:
            group.start_soon(lambda: wait_then_cancel(waiter, engine))
            await engine.complete("never", max_tokens=8, on_token=started_waiter)
        assert waiter.cancelled_caught
        assert (engine.in_flight, engine.queued) == (1, 0), "the waiter left the queue; the running request goes on"
    assert started_waiter == []
    assert results[0].usage.completion_tokens == 48


async def wait_then_cancel(scope: anyio.CancelScope, engine: LlamaEngine) -> None:
    await wait_until(lambda: engine.queued == 1)
    scope.cancel()


async def test_embeddings_are_unit_vectors_that_tell_texts_apart(engine: LlamaEngine) -> None:
    cat, cat_again, market = await engine.embed(["a cat on a mat", "a cat on a mat", "stock market crash"])
    assert len(cat) == len(market) > 100
    assert math.isclose(math.fsum(x * x for x in cat), 1.0, rel_tol=1e-3)
    assert cat == cat_again
    assert math.fsum(a * b for a, b in zip(cat, market, strict=True)) < 0.999


async def test_embedding_nothing_is_refused(engine: LlamaEngine) -> None:
    with pytest.raises(RequestRejected, match="texts is empty"):
        await engine.embed([])


async def test_describe_names_the_file_its_hash_and_how_it_runs(engine: LlamaEngine) -> None:
    described = engine.describe()
    assert described["sha256"] == await anyio.to_thread.run_sync(lambda: sha256_of(model_path(BASE_MODEL)))
    assert described["quantization"] == "Q4_K_M"
    assert described["n_ctx"] == N_CTX
    assert described["n_threads"] == default_threads()
    assert described["state"] == "ready"
    assert described["chat_template"] == "gemma"


def test_gemma_turns_fold_the_system_prompt_into_the_first_user_turn() -> None:
    engine = LlamaEngine(model_path(BASE_MODEL))  # reads the header only; nothing loads outside `async with`
    prompt, stop = engine.format_chat(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello"), ChatMessage("user", "Bye")]
    )
    assert prompt == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert stop == ["<end_of_turn>"]


@pytest.mark.parametrize(
    ("messages", "problem"),
    [([], "messages is empty"), ([ChatMessage("robot", "hi")], "unknown role 'robot'")],
)
def test_bad_conversations_are_refused(messages: list[ChatMessage], problem: str) -> None:
    with pytest.raises(RequestRejected, match=problem):
        LlamaEngine(model_path(BASE_MODEL)).format_chat(messages)


async def test_chat_sends_the_turn_markers_as_special_tokens(engine: LlamaEngine) -> None:
    done = await engine.chat([ChatMessage("user", "What is the capital of France?")], max_tokens=4, temperature=0.0)
    # <bos> <start_of_turn> user \n What is the capital of France ? <end_of_turn> \n <start_of_turn> model \n:
    # sixteen tokens; spelled out as text the markers alone would take more than that.
    assert done.usage.prompt_tokens == 16
    assert "<start_of_turn>" not in done.text


async def test_a_request_during_the_load_waits_for_it_when_the_engine_allows_a_wait() -> None:
    async with LlamaEngine(model_path(BASE_MODEL), n_ctx=256, load_wait=120) as loading:
        assert loading.state is EngineState.LOADING
        done = await loading.chat([ChatMessage("user", "hi")], max_tokens=2)
    assert done.usage.completion_tokens == 2


async def test_the_default_model_answers_and_ends_at_its_end_of_turn() -> None:
    async with LlamaEngine(model_path("default"), n_ctx=1024) as default:
        await default.wait_ready()
        done = await default.chat([ChatMessage("user", "Name three colours.")], max_tokens=256, temperature=0.0)
    assert done.finish_reason == "stop", done.text
    assert 0 < done.usage.completion_tokens < 256
    assert "<|im_end|>" not in done.text and "<|im_start|>" not in done.text
    assert "Red" in done.text


async def test_the_default_model_does_not_loop_on_the_readme_question_at_temperature_0() -> None:
    """Greedy decoding without a repeat penalty ran this question to the token limit on SmolLM2 (issue 10)."""
    async with LlamaEngine(model_path("default"), n_ctx=1024) as default:
        await default.wait_ready()
        done = await default.chat([ChatMessage("user", "What is the capital of France?")], max_tokens=200, temperature=0.0)
    assert done.finish_reason == "stop", done.text
    assert done.usage.completion_tokens < 100


async def test_request_while_loading_says_still_loading() -> None:
    async with LlamaEngine(model_path(BASE_MODEL), n_ctx=256) as loading:
        assert loading.state is EngineState.LOADING  # the load runs in a thread; entering does not wait for it
        with pytest.raises(ModelUnavailable, match="still loading; retry"):
            await loading.complete("hi", max_tokens=2)
        with pytest.raises(ModelUnavailable, match="still loading"):
            await loading.embed(["hi"])
        await loading.wait_ready()
        assert (await loading.complete("hi", max_tokens=2)).usage.completion_tokens == 2


async def test_model_llama_cpp_cannot_load_fails_with_a_message(unloadable_model: Path) -> None:
    async with LlamaEngine(unloadable_model, n_ctx=256) as broken:
        with pytest.raises(ModelUnavailable, match=r"could not load model .*unknown-arch.gguf"):
            await broken.wait_ready()
        assert broken.state is EngineState.FAILED
        with pytest.raises(ModelUnavailable, match="could not load model"):
            await broken.complete("hi", max_tokens=2)


async def test_closing_mid_generation_ends_it_and_the_queue_with_shutting_down_then_frees_the_model() -> None:
    """The model is freed only after its worker is done: freeing it mid-decode crashed the process (issue 10)."""
    engine = LlamaEngine(model_path(BASE_MODEL), n_ctx=N_CTX)
    refusals: list[str] = []
    streaming = anyio.Event()

    async def on_token(text: str) -> None:
        streaming.set()

    async def generate() -> None:
        try:
            await engine.complete("Count from 1 to 1000: 1, 2, 3, 4,", max_tokens=400, temperature=0.0, on_token=on_token)
        except ModelUnavailable as exc:
            refusals.append(str(exc))
        finally:
            streaming.set()  # a generation that ended by itself fails the test below instead of hanging it

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            async with engine:
                await engine.wait_ready()
                group.start_soon(generate)
                await streaming.wait()
                group.start_soon(generate)
                await wait_until(lambda: engine.queued == 1)
    assert len(refusals) == 2 and all("shutting down" in refusal for refusal in refusals), refusals
    assert engine.state is EngineState.CLOSED and (engine.in_flight, engine.queued) == (0, 0)
