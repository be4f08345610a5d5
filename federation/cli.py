"""`mcpfed`: the command line. It parses, calls the library, prints; no logic lives here.

Errors go to stderr as one line saying what was wrong and what to do, with a
non-zero exit code; never a stack trace for a mistake a user can make.
"""

from __future__ import annotations

import json
import signal
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
    notes: Annotated[Optional[Path], typer.Option(help="Folder of Markdown notes to offer as search_notes/read_note.")] = None,
    share: Annotated[
        Optional[list[str]], typer.Option(help='Offer a stdio MCP server\'s tools: NAME="command args" (repeatable).')
    ] = None,
    mesh: Annotated[Optional[str], typer.Option(help="Mesh this peer belongs to; peers of other meshes are ignored.")] = None,
    mdns: Annotated[str, typer.Option(help="mDNS: 'auto' (follow --host), 'off', or interfaces/IPv4s, comma-separated.", envvar="MCPFED_MDNS")] = "auto",
    peer: Annotated[Optional[list[str]], typer.Option("--peer", help="A peer URL to add statically (repeatable), e.g. when multicast is blocked.")] = None,
    relay: Annotated[Optional[list[str]], typer.Option("--relay", help="Relay base URL to attach to (repeatable; default: the mesh's).")] = None,
) -> None:
    """Run a peer until Ctrl-C (or SIGTERM) and print its MCP URL."""
    from pydantic import ValidationError

    from federation.settings import PeerSettings

    try:
        given = {"name": name, "threads": threads, "home": home, "db": db, "notes": notes, "mesh": mesh, "share": share, "peers": peer, "relays": relay}
        settings = PeerSettings(
            model=None if model == "none" else model,
            host=host,
            port=port,
            gpu_layers=_parse_gpu_layers(gpu_layers),
            n_ctx=ctx,
            mdns=mdns,
            **{key: value for key, value in given.items() if value},  # unset flags leave MCPFED_* env values in force
        )
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), 2)
    _run_until_interrupted(_serve, settings)


def _run_until_interrupted(main: Callable[[Any], Awaitable[None]], settings: Any) -> None:
    try:
        anyio.run(main, settings)
    except KeyboardInterrupt:
        pass
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
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                err.print(f"{signal.Signals(signum).name}: leaving the mesh")
                break


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
    from federation.models import find_models

    with err.status("hashing model files…", spinner="dots"):
        found = find_models(paths or [], home)
    for entry in found:  # a block per model: a table in 80 columns would cut the sha256 and path people copy
        if entry.error:
            out.print(f"[red]unusable[/]  {entry.path}\n  {entry.error}\n", soft_wrap=True, highlight=False)
        else:
            out.print(
                f"[bold]{entry.name}[/]  {entry.size / 1e6:.0f} MB  {entry.quantization}  {entry.architecture}\n"
                f"  {entry.path}\n  sha256 {entry.sha256}\n",
                soft_wrap=True,
                highlight=False,
            )


@app.command()
def gateway(
    mesh: Annotated[Optional[str], typer.Option(help="Mesh to join (default: the one `mcpfed join` stored, if any).")] = None,
    name: Annotated[str, typer.Option(help="Name this light member shows to the mesh.")] = "gateway",
    peer: Annotated[Optional[list[str]], typer.Option(help="A peer's URL to know without mDNS (repeatable).")] = None,
    mdns: Annotated[str, typer.Option(help="'auto' (loopback), 'off', or interfaces to browse on.")] = "auto",
    home: Annotated[Optional[Path], typer.Option(help="State directory.", envvar="MCPFED_HOME")] = None,
) -> None:
    """Speak MCP over stdio for Claude Desktop / Gemini CLI, fronting the whole mesh (no model here)."""
    from federation.gateway import run_gateway
    from federation.home import state_dir
    from federation.settings import PeerSettings

    member_home = state_dir(home) / "clients" / name  # its own identity, never a local serve's
    anyio.run(run_gateway, PeerSettings(name=name, port=0, model=None, mesh=mesh, home=member_home, peers=peer or [], mdns=mdns))


def _parse_since(value: str | None) -> Any:
    from datetime import datetime, timedelta, timezone

    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return datetime.now(timezone.utc) - timedelta(seconds=float(value[:-1]) * units[value[-1]])
    except (KeyError, ValueError, IndexError):
        _fail(f"--since takes a duration like 30m, 2h or 7d, not {value!r}.", 2)


@app.command()
def ledger(
    action: Annotated[str, typer.Argument(help="'show' (default) or 'verify' (re-check every stored receipt's signature).")] = "show",
    by: Annotated[str, typer.Option(help="Group by 'peer' (who served) or 'tool'.")] = "peer",
    since: Annotated[Optional[str], typer.Option(help="Only calls newer than this, e.g. 30m, 2h, 7d.")] = None,
    home: Annotated[Optional[Path], typer.Option(help="State directory whose ledger to read.", envvar="MCPFED_HOME")] = None,
    db: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL of the store instead of the state dir's SQLite.")] = None,
) -> None:
    """Who served how many calls and tokens, from the signed receipts this peer stored."""
    import json as json_module

    from rich.table import Table

    from federation.home import state_dir
    from federation.receipt import verify_receipt
    from federation.store import Store, database_url

    if by not in ("peer", "tool") or action not in ("show", "verify"):
        _fail("usage: mcpfed ledger [show|verify] [--by peer|tool] [--since 2h].", 2)
    store = Store(db or database_url(state_dir(home)))
    if action == "verify":
        receipts = store.receipts()
        bad = [(row, callee, problem) for row, callee, raw in receipts if (problem := verify_receipt(json_module.loads(raw), expected_peer=callee))]
        for row, callee, problem in bad:
            err.print(f"[red]row {row}[/] from {callee}: {problem}")
        out.print(f"{len(receipts) - len(bad)} of {len(receipts)} receipts verify")
        raise typer.Exit(1 if bad else 0)
    table = Table("peer" if by == "peer" else "tool", "role", "calls", "ok", "tokens in", "tokens out", "avg ms", "receipts ✓", "receipts ✗", box=None)
    for row in store.ledger(by=by, since=_parse_since(since)):
        table.add_row(*(str(row[k]) for k in ("key", "role", "calls", "ok", "tokens_in", "tokens_out", "avg_ms", "receipts_ok", "receipts_bad")))
    out.print(table)


@app.command()
def peers(
    url: Annotated[Optional[str], typer.Option("--url", "-u", help="Ask this running peer (its URL) instead of reading the state dir.")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the table on screen, updated live from the peer's /events.")] = False,
    home: Annotated[Optional[Path], typer.Option(help="State directory of the peer whose table to read.", envvar="MCPFED_HOME")] = None,
    db: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL of the store (default: SQLite in the state dir).")] = None,
) -> None:
    """Show the peer table: who this peer knows, how it reaches them, whether they are alive."""
    if watch:
        try:
            anyio.run(_watch_peers, url or DEFAULT_URL)
        except KeyboardInterrupt:
            pass
        return
    if url is not None:
        from federation.watch import fetch_peers

        rows = anyio.run(fetch_peers, url)
        source = url
    else:
        from federation.discovery.persist import stored_peers

        rows, source = stored_peers(home, db)
    if not rows:
        err.print(f"no peers known to {source} (is `mcpfed serve` running? peers appear within a second on a LAN)")
        return
    out.print(_peer_table(rows))


_STATUS_STYLE = {"up": "green", "suspect": "yellow", "dead": "red"}


def _peer_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    from federation.urls import address_of

    table = Table(box=None)
    for column in ("name", "id", "address", "via", "models", "tools", "status", "in-flight", "latency"):
        table.add_column(column, no_wrap=column in ("id", "address"))
    for row in rows:
        latency = row.get("latency_ms")
        style = _STATUS_STYLE.get(row["status"], "")
        table.add_row(
            row["name"],
            row["id"],
            address_of(row["url"]),
            row["via"],
            ", ".join(row["models"]) or "-",
            str(row["tools"]),
            f"[{style}]{row['status']}[/]" if style else row["status"],
            str(row["in_flight"]),
            "-" if latency is None else f"{latency:.1f} ms",
        )
    return table


async def _watch_peers(url: str) -> None:
    from rich.live import Live

    from federation.watch import follow_peers

    live = Live(_peer_table([]), console=out, refresh_per_second=8)

    def show(rows: list[dict[str, Any]]) -> None:
        if not live.is_started:
            live.start()  # only once connected, so a wrong URL prints just the error
        live.update(_peer_table(rows))

    try:
        await follow_peers(url, show)
    finally:
        if live.is_started:
            live.stop()


@app.command()
def tui(
    node: Annotated[Optional[str], typer.Option("--node", "-n", help="URL of the peer to watch (default http://127.0.0.1:8801; a relay's <relay>/p/<peer-id> too).", envvar="MCPFED_NODE")] = None,
    observe: Annotated[bool, typer.Option("--observe", help="Start a light peer of our own (no model) that joins the mesh, and watch it.")] = False,
    token: Annotated[Optional[str], typer.Option("--token", help="The mesh secret, sent as a bearer token.", envvar="MCPFED_MESH_SECRET")] = None,
) -> None:
    """Watch the mesh live: peers, topology, calls, and a prompt box that asks the mesh."""
    if observe and node:
        _fail("--observe watches a peer of its own; leave out --node, or drop --observe to watch that node.", 2)
    from tui.app import run

    run(node, observe=observe, token=token)


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
    except BaseExceptionGroup as group:  # raised through task groups while starting or stopping
        mistake = group.subgroup(lambda exc: isinstance(exc, FederationError))
        if mistake is None:
            raise
        while isinstance(mistake, BaseExceptionGroup):
            mistake = mistake.exceptions[0]
        err.print(f"[bold red]error:[/] {mistake}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
