"""`mcpfed`: the command line. It parses, calls the library, prints; no logic lives here.

Errors go to stderr as one line saying what was wrong and what to do, with a
non-zero exit code; never a stack trace for a mistake a user can make.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import anyio
import typer
from rich.console import Console

from federation.errors import FederationError

app = typer.Typer(
    name="mcpfed",
    help="A federation of MCP servers: serve a local llama.cpp model as an MCP peer, ask it, call its tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

DEFAULT_URL = "http://127.0.0.1:8801/mcp"
UrlOption = Annotated[str, typer.Option("--url", "-u", help="MCP URL of the peer.", envvar="MCPFED_URL")]


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _mesh_headers() -> dict[str, str]:
    """The stored mesh's credential: once this machine is in a mesh, its peers (and relays) want it."""
    from federation.membership import auth_headers
    from federation.settings import PeerSettings

    return auth_headers(PeerSettings())


def _parse_gpu_layers(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        _fail(f"--gpu-layers takes 'auto', -1 (all) or a number of layers, not {value!r}.", 2)
    return None


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="GGUF file to serve, 'default' (embedded Gemma 3 270M) or 'none'.")] = "default",
    name: Annotated[Optional[str], typer.Option(help="Display name (default: host name).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs a mesh secret.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = 8801,
    gpu_layers: Annotated[str, typer.Option("--gpu-layers", help="'auto' (all when the build has GPU offload), -1 or N.")] = "auto",
    ctx: Annotated[int, typer.Option("--ctx", help="Context window in tokens.")] = 4096,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for the model (default: all cores).")] = None,
    home: Annotated[Optional[Path], typer.Option(help="State directory (key, database).", envvar="MCPFED_HOME")] = None,
    db: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL of the store (default: SQLite in the state dir).")] = None,
    relay: Annotated[Optional[list[str]], typer.Option("--relay", help="Relay base URL to attach to (repeatable; default: the mesh's).")] = None,
) -> None:
    """Run a peer until Ctrl-C and print its MCP URL."""
    from federation.settings import PeerSettings

    settings = PeerSettings(
        model=None if model == "none" else model,
        name=name,
        host=host,
        port=port,
        gpu_layers=_parse_gpu_layers(gpu_layers),
        n_ctx=ctx,
        threads=threads,
        home=home,
        db=db,
        **({"relays": relay} if relay else {}),
    )
    _run_until_interrupted(_serve, settings)


def _run_until_interrupted(main: Callable[[Any], Awaitable[None]], settings: Any) -> None:
    try:
        anyio.run(main, settings)
    except KeyboardInterrupt:
        err.print("stopped")


async def _serve(settings: Any) -> None:
    from federation.node import Node

    async with Node(settings) as node:
        if node.engine is not None:
            with err.status(f"loading {node.engine.info.name} ({node.engine.info.size / 1e6:.0f} MB)…", spinner="dots"):
                await node.wait_ready()
            err.print(f"model {node.engine.info.name} ready: {node.engine.n_threads} threads, {node.engine.n_gpu_layers} GPU layers")
        err.print(f"peer [bold]{node.name}[/] ({node.peer_id}) serving; Ctrl-C stops it")
        out.print(node.mcp_url, highlight=False)
        await anyio.sleep_forever()


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    url: UrlOption = DEFAULT_URL,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 256,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 is greedy.")] = 0.7,
    raw: Annotated[bool, typer.Option("--raw", help="Plain completion (generate) instead of a chat turn.")] = False,
) -> None:
    """Ask a peer's model; the answer streams as it is generated."""
    anyio.run(_ask, url, prompt, max_tokens, temperature, raw)


async def _ask(url: str, prompt: str, max_tokens: int, temperature: float, raw: bool) -> None:
    from federation.client import call_tool, connect

    async def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if raw:
        tool, arguments = "generate", {"prompt": prompt}
    else:
        tool, arguments = "chat", {"messages": [{"role": "user", "content": prompt}]}
    arguments |= {"max_tokens": max_tokens, "temperature": temperature}
    async with connect(url, headers=_mesh_headers()) as client:
        result = await call_tool(client, tool, arguments, on_text=show)
    sys.stdout.write("\n")
    usage = (result.structured_content or {}).get("usage", {})
    if usage:
        err.print(f"[dim]{usage['completion_tokens']} tokens, {usage['tokens_per_s']} tok/s, {usage['total_ms'] / 1000:.2f} s[/]")


@app.command()
def call(
    tool: Annotated[str, typer.Argument(help="Tool name, e.g. model_info.")],
    arguments: Annotated[str, typer.Argument(help="Arguments as a JSON object.")] = "{}",
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Call any tool on a peer and print its result as JSON."""
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        _fail(f"arguments are not valid JSON ({exc.msg} at column {exc.colno}); pass an object like '{{\"prompt\": \"hi\"}}'.", 2)
    if not isinstance(parsed, dict):
        _fail("arguments must be a JSON object, like '{\"prompt\": \"hi\"}'.", 2)
    anyio.run(_call, url, tool, parsed)


async def _call(url: str, tool: str, arguments: dict[str, Any]) -> None:
    from federation.client import call_tool, connect, result_text

    async with connect(url, headers=_mesh_headers()) as client:
        result = await call_tool(client, tool, arguments)
    if result.structured_content is not None:
        out.print_json(data=result.structured_content)
    else:
        out.print(result_text(result), highlight=False)


@app.command()
def tools(url: UrlOption = DEFAULT_URL) -> None:
    """List the tools a peer offers."""
    anyio.run(_tools, url)


async def _tools(url: str) -> None:
    from federation.client import connect

    async with connect(url, headers=_mesh_headers()) as client:
        listed = await client.list_tools()
    for tool in listed.tools:
        summary = (tool.description or "").strip().splitlines()
        out.print(f"[bold]{tool.name}[/]  {summary[0] if summary else ''}", highlight=False)


@app.command()
def models(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Extra .gguf files or folders to list.")] = None,
    home: Annotated[Optional[Path], typer.Option(help="State directory; its models/ folder is listed.", envvar="MCPFED_HOME")] = None,
) -> None:
    """List local models: the embedded default, the state dir's models/, and PATHS."""
    from rich.table import Table

    from federation.models import find_models

    table = Table("name", "file", "size", "quantization", "arch", "sha256", box=None)
    with err.status("hashing model files…", spinner="dots"):
        found = find_models(paths or [], home)
    for entry in found:
        if entry.error:
            table.add_row("[red]unusable[/]", str(entry.path), "", "", "", f"[red]{entry.error}[/]")
        else:
            table.add_row(entry.name, str(entry.path), f"{entry.size / 1e6:.0f} MB", entry.quantization, entry.architecture, entry.sha256)
    out.print(table)


@app.command("relay")
def relay_command(
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs a mesh secret.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = 8800,
    db: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL of the card directory; share one Postgres between relays.")] = None,
    public_url: Annotated[Optional[str], typer.Option(help="Base URL clients use to reach this relay (behind a proxy or TLS).")] = None,
    max_streams: Annotated[int, typer.Option(help="Requests in flight per peer tunnel.")] = 64,
    max_request_bytes: Annotated[int, typer.Option(help="Largest request body forwarded to a peer.")] = 4 * 1024 * 1024,
    home: Annotated[Optional[Path], typer.Option(help="State directory (mesh, directory database).", envvar="MCPFED_HOME")] = None,
) -> None:
    """Run a relay until Ctrl-C: peers behind NAT attach to it, clients reach them at <relay>/p/<id>/mcp."""
    from federation.relay.settings import RelaySettings

    settings = RelaySettings(
        host=host, port=port, db=db, public_url=public_url, max_streams=max_streams, max_request_bytes=max_request_bytes, home=home
    )
    _run_until_interrupted(_relay, settings)


async def _relay(settings: Any) -> None:
    from federation.relay.server import Relay

    async with Relay(settings) as relay:
        mesh = f"mesh {settings.mesh_name!r}" if settings.mesh_secret else "no mesh: open to anyone who reaches it"
        err.print(f"relay serving ({mesh}); peers attach to {relay.public_url}, Ctrl-C stops it")
        out.print(relay.public_url, highlight=False)
        await anyio.sleep_forever()


HomeOption = Annotated[Optional[Path], typer.Option(help="State directory.", envvar="MCPFED_HOME")]


@app.command()
def init(
    mesh: Annotated[str, typer.Option("--mesh", help="Name of the new mesh.")],
    relay: Annotated[Optional[list[str]], typer.Option("--relay", help="Relay base URL members use (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the mesh this machine already belongs to.")] = False,
    home: HomeOption = None,
) -> None:
    """Create a mesh (id + secret) on this machine; then `mcpfed invite` others into it."""
    from federation.home import state_dir
    from federation.membership import create_mesh

    created = create_mesh(state_dir(home), mesh, relays=relay or [], force=force)
    err.print(f"created mesh [bold]{created.name}[/] ({created.id}); invite machines with `mcpfed invite`")


@app.command()
def invite(
    relay: Annotated[Optional[list[str]], typer.Option("--relay", help="Relay base URL to put in the token (repeatable; remembered here too).")] = None,
    home: HomeOption = None,
) -> None:
    """Print a join token for this machine's mesh. It holds the mesh secret: send it privately."""
    from federation.home import state_dir
    from federation.membership import invite as make_token

    token = make_token(state_dir(home), relay or [])
    err.print("join token (holds the mesh secret; share it privately). On the other machine: mcpfed join TOKEN")
    out.print(token, highlight=False, soft_wrap=True)


@app.command()
def join(
    token: Annotated[str, typer.Argument(help="The token `mcpfed invite` printed.")],
    force: Annotated[bool, typer.Option("--force", help="Leave the mesh this machine already belongs to.")] = False,
    home: HomeOption = None,
) -> None:
    """Join a mesh with a token from `mcpfed invite`; `serve` and `relay` then use it."""
    from federation.home import state_dir
    from federation.membership import join as join_mesh

    joined = join_mesh(state_dir(home), token, force=force)
    relays = ", ".join(joined.relays) or "none"
    err.print(f"joined mesh [bold]{joined.name}[/] ({joined.id}); relays: {relays}")


def main() -> None:
    """Console entry point: run the app, turning our errors into one stderr line."""
    try:
        app()
    except FederationError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
