"""`mcpfed` as a user runs it: a real process per command, against a real peer on loopback.

Errors must reach the user as one `error:` line on stderr with a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from federation import Mesh
from federation.node import Node
from federation.settings import PeerSettings
from servers.gguf_file import sha256_of
from servers.llama_engine import default_model_path
from tests.support.cli import assert_one_line_error, mcpfed
from tests.support.models import BASE_MODEL, bad_model
from tests.support.paths import REPO

pytestmark = pytest.mark.anyio

@pytest.fixture(scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    home = tmp_path_factory.mktemp("peer")
    async with Node(PeerSettings(name="model", port=0, home=home, model=BASE_MODEL, n_ctx=1024)) as peer:
        await peer.wait_ready()
        yield peer


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("serve", ["--model", "--name", "--host", "--port", "--gpu-layers", "--ctx", "--threads", "--home", "--db"]),
        ("ask", ["prompt", "--url", "--max-tokens", "--temperature", "--raw"]),
        ("call", ["tool", "arguments", "--url"]),
        ("tools", ["--url"]),
        ("models", ["paths", "--home"]),
    ],
)
async def test_help_of_each_command_lists_every_option(env: dict[str, str], command: str, options: list[str]) -> None:
    done = await mcpfed(command, "--help", env=env)
    assert done.returncode == 0
    for option in options:
        assert option in done.stdout.lower(), f"{command} --help lacks {option}"


async def test_help_lists_the_commands(env: dict[str, str]) -> None:
    done = await mcpfed("--help", env=env)
    assert done.returncode == 0
    for command in ("serve", "ask", "call", "tools", "models"):
        assert re.search(rf"^\W*{command}\s", done.stdout, re.MULTILINE), command


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_serve_prints_its_url_and_stops_cleanly_on_a_signal(env: dict[str, str], stop: signal.Signals) -> None:
    command = [sys.executable, "-m", "federation.cli", "serve", "--port", "0", "--ctx", "512"]
    async with await anyio.open_process(command, cwd=REPO, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        with anyio.fail_after(60):
            url = (await process.stdout.receive()).decode().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/mcp", url), url
        async with httpx.AsyncClient() as http:
            health = (await http.get(url.removesuffix("/mcp") + "/health")).json()
        assert (health["ok"], health["model"]) == (True, "ready"), "the URL is printed once the model is ready"
        process.send_signal(stop)
        with anyio.fail_after(30):
            code = await process.wait()
        stderr = b"".join([chunk async for chunk in process.stderr]).decode()
    assert code == 0
    assert "Traceback" not in stderr
    assert stderr.strip().endswith("stopped")


async def test_ask_streams_the_answer_and_prints_usage_to_stderr(node: Node, env: dict[str, str]) -> None:
    done = await mcpfed("ask", "--url", node.mcp_url, "--max-tokens", "8", "Say hello.", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the answer goes to stdout"
    assert re.search(r"^\d+ tokens, [\d.]+ tok/s, [\d.]+ s$", done.stderr.strip(), re.MULTILINE), done.stderr


async def test_ask_raw_uses_plain_completion(node: Node, env: dict[str, str]) -> None:
    done = await mcpfed("ask", "--raw", "--url", node.mcp_url, "--max-tokens", "5", "Once upon a time", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().startswith("5 tokens")


async def test_call_prints_the_structured_result_as_json(node: Node, env: dict[str, str]) -> None:
    done = await mcpfed("call", "--url", node.mcp_url, "model_info", "{}", env=env)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert (info["quantization"], info["state"], info["n_ctx"]) == ("Q4_K_M", "ready", 1024)


async def test_tools_lists_the_model_tools(node: Node, env: dict[str, str]) -> None:
    done = await mcpfed("tools", "--url", node.mcp_url, env=env)
    assert done.returncode == 0, done.stderr
    names = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert {"generate", "chat", "embed", "model_info"} <= names


@pytest.mark.parametrize(
    ("arguments", "says"),
    [("{prompt: hi}", "arguments are not valid JSON"), ("[1, 2]", "arguments must be a JSON object")],
    ids=["not-json", "not-an-object"],
)
async def test_call_with_bad_arguments_exits_2_and_says_how_to_write_them(node: Node, env: dict[str, str], arguments: str, says: str) -> None:
    done = await mcpfed("call", "--url", node.mcp_url, "generate", arguments, env=env)
    assert_one_line_error(done, 2, says)
    assert '{"prompt": "hi"}' in done.stderr


async def test_call_of_an_unknown_tool_names_the_tools_there_are(node: Node, env: dict[str, str]) -> None:
    done = await mcpfed("call", "--url", node.mcp_url, "nope", "{}", env=env)
    assert_one_line_error(done, 1, "Unknown tool: 'nope'. This peer offers: chat, embed, generate")


async def test_call_with_a_wrong_argument_shows_the_tool_error(node: Node, env: dict[str, str]) -> None:
    done = await mcpfed("call", "--url", node.mcp_url, "generate", '{"prompt": "x", "max_tokens": 0}', env=env)
    assert done.returncode == 1
    assert "max_tokens must be at least 1" in done.stderr
    assert "Traceback" not in done.stderr


async def test_ask_with_a_bad_option_value_shows_the_peers_message(node: Node, env: dict[str, str]) -> None:
    done = await mcpfed("ask", "--url", node.mcp_url, "--max-tokens", "0", "hi", env=env)
    assert_one_line_error(done, 1, "max_tokens must be at least 1 (got 0)")


async def test_ask_where_nothing_listens_says_cannot_reach(env: dict[str, str]) -> None:
    with socket_without_listener() as port:
        done = await mcpfed("ask", "--url", f"http://127.0.0.1:{port}/mcp", "hi", env=env)
    assert_one_line_error(done, 1, f"cannot reach the peer at http://127.0.0.1:{port}/mcp")
    assert len(done.stderr.strip().splitlines()) == 1


@contextmanager
def socket_without_listener() -> Iterator[int]:
    """A loopback port that is bound (so nobody else takes it) but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_models_lists_the_embedded_model_with_size_quantization_and_full_sha256(env: dict[str, str]) -> None:
    done = await mcpfed("models", env=env | {"COLUMNS": "80"})  # a narrow terminal must not cut the hash
    assert done.returncode == 0, done.stderr
    assert "Gemma 3 270m" in done.stdout
    assert "253 MB" in done.stdout
    assert "Q4_K_M" in done.stdout
    assert await anyio.to_thread.run_sync(lambda: sha256_of(default_model_path())) in done.stdout


async def test_models_marks_an_unusable_file_and_says_why(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_text("not a model")
    done = await mcpfed("models", str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr
    assert "unusable" in done.stdout
    assert "is not a GGUF model" in done.stdout


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("missing", "does not exist. Pass --model PATH to a .gguf file, or --model default."),
        ("not-gguf", "is not a GGUF model"),
        ("truncated", "is truncated"),
        ("directory", "is a directory. Pass --model the path of a .gguf file inside it."),
    ],
)
async def test_serve_with_an_unusable_model_exits_with_one_line(env: dict[str, str], tmp_path: Path, kind: str, says: str) -> None:
    done = await mcpfed("serve", "--port", "0", "--model", str(bad_model(kind, tmp_path)), env=env)
    assert_one_line_error(done, 1, says)


async def test_serve_with_a_model_llama_cpp_cannot_load_exits_with_one_line(env: dict[str, str], unloadable_model: Path) -> None:
    done = await mcpfed("serve", "--port", "0", "--model", str(unloadable_model), env=env)
    assert_one_line_error(done, 1, "could not load model")


async def test_serve_on_a_taken_port_says_pick_another(node: Node, env: dict[str, str]) -> None:
    done = await mcpfed("serve", "--model", "none", "--port", str(node.port), env=env)
    assert_one_line_error(done, 1, f"port {node.port} on 127.0.0.1 is already in use; pick another with --port")


async def test_serve_with_bad_gpu_layers_exits_2(env: dict[str, str]) -> None:
    done = await mcpfed("serve", "--port", "0", "--gpu-layers", "lots", env=env)
    assert_one_line_error(done, 2, "--gpu-layers takes 'auto', -1 (all) or a number of layers, not 'lots'")


async def test_ledger_counts_calls_and_shows_what_scripts_on_this_machine_called(env: dict[str, str], tmp_path: Path) -> None:
    """A `Mesh` script records the calls it makes under <home>/clients/<name>; `mcpfed ledger` at <home> shows them, marked."""
    home = tmp_path / "home"
    async with Node(PeerSettings(name="server", port=0, home=home, model=None, mdns="off")) as server:
        async with Mesh.connect(name="script", home=home, peers=[server.mcp_url], mdns="off", wait_for=1) as mesh:
            for _ in range(2):
                await mesh.call("server", "mesh_peers")
    done = await mcpfed("ledger", "--home", str(home), env=env)
    assert done.returncode == 0, done.stderr
    rows = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()[1:]]
    made = next(row for row in rows if row[1] == "client script")
    served = next(row for row in rows if row[1] == "this peer")
    assert (made[2], made[3], made[4], made[8]) == ("made", "2", "2", "2"), done.stdout  # role, calls, ok, receipts ✓
    assert (served[2], served[3], served[4]) == ("served", "2", "2"), done.stdout
    verified = await mcpfed("ledger", "verify", "--home", str(home), env=env)
    assert verified.returncode == 0, verified.stderr
    lines = verified.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["this peer: 2 of 2 rows verify", "client script: 2 of 2 rows verify", "2 of 2 receipts verify"]


async def test_ledger_with_an_unknown_action_names_the_actions_there_are(env: dict[str, str]) -> None:
    done = await mcpfed("ledger", "list", env=env)
    assert_one_line_error(done, 2, "ledger has no action 'list'; use `mcpfed ledger show`, `mcpfed ledger verify` or `mcpfed ledger export`.")


async def test_two_shares_offering_the_same_tools_are_reported_at_start_up(env: dict[str, str]) -> None:
    child = f"{sys.executable} {REPO / 'tests' / 'servers' / 'stdio_child.py'}"
    command = [sys.executable, "-m", "federation.cli", "serve", "--model", "none", "--port", "0", "--mdns", "off", "--share", f"a={child}", "--share", f"b={child}"]
    async with await anyio.open_process(command, cwd=REPO, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        with anyio.fail_after(60):
            await process.stdout.receive()  # the URL: the peer serves, both shares started
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await process.wait()
        stderr = b"".join([chunk async for chunk in process.stderr]).decode()
    assert "--share b offers echo, slow, pid, which --share a already offers" in stderr, stderr
    assert "Traceback" not in stderr


async def test_serve_logs_whole_lines_into_a_file(env: dict[str, str]) -> None:
    """A warning is one line in a log file (the MCP SDK's Rich handler broke it over eight, at 80 columns)."""
    name = "a-rather-long-peer-name-for-a-log-line"
    unreachable = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens there
    command = [sys.executable, "-m", "federation.cli", "serve", "--model", "none", "--port", "0", "--mdns", "off", "--name", name, "--peer", unreachable]
    logged = ""
    into_a_file = {key: value for key, value in env.items() if key != "COLUMNS"}  # a file has no width
    async with await anyio.open_process(command, cwd=REPO, env=into_a_file) as process:
        assert process.stdout is not None and process.stderr is not None
        with anyio.fail_after(60):
            await process.stdout.receive()  # the URL: the peer serves
            while "retrying" not in logged:
                logged += (await process.stderr.receive()).decode()
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await process.wait()
    warning = next(line for line in logged.splitlines() if "not admitting" in line)
    assert f"{name}: not admitting {unreachable} (unreachable)" in warning and warning.endswith("(retrying every 30 s at most)"), logged


async def test_tui_mesh_chooses_the_mesh_of_the_observer_peer(env: dict[str, str]) -> None:
    from tui.observer import mesh_settings, observer_settings

    assert observer_settings(mesh_settings(None, "team")).mesh == "team"
    done = await mcpfed("tui", "--mesh", "team", env=env)
    assert_one_line_error(done, 2, "--mesh chooses the mesh of --observe's own peer")


async def test_call_without_a_required_argument_names_it_in_one_sentence(node: Node, env: dict[str, str]) -> None:
    done = await mcpfed("call", "--url", node.mcp_url, "generate", "{}", env=env)
    assert_one_line_error(done, 1, "generate: missing required argument 'prompt' (string).")
    assert "pydantic" not in done.stderr and "validation error" not in done.stderr
