"""`mcpfed`: the command line. It parses, calls the library, prints; no logic lives here.

Errors go to stderr as one line saying what was wrong and what to do, with a
non-zero exit code; never a stack trace for a mistake a user can make.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC
from functools import partial
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import anyio
import anyio.abc
import typer
from rich.console import Console
from rich.markup import escape

from federation.const import (
    CHUNK_BYTES,
    DEFAULT_CONTEXT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RELAY_PORT,
    HEADER_TIMEOUT_SECONDS,
    MAX_CONNECTIONS_PER_ADDRESS,
    MAX_REQUEST_BYTES,
)
from federation.errors import ConfigError, FederationError
from servers.fair_queue import DEFAULT_QUEUE_LIMIT

if TYPE_CHECKING:
    from federation.contract import PeerRow
    from federation.settings import MeshSettings

Settings = TypeVar("Settings", bound="MeshSettings")

app = typer.Typer(
    name="mcpfed",
    help="A federation of MCP servers: serve a local llama.cpp model as an MCP peer, ask it, call its tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_UNWRAPPED = 100_000
"""Columns of a console writing into a pipe or file: wide enough for any line we print."""


def _console(*, stderr: bool = False) -> Console:
    """Rich's console for stdout or stderr; into a pipe or file it neither wraps nor cuts.

    80 columns is a terminal's limit, not a file's: `mcpfed peers > peers.txt`
    must hold whole ids, paths and column names, one row per line.
    """
    if (sys.stderr if stderr else sys.stdout).isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=_UNWRAPPED, soft_wrap=True)


out = _console()
err = _console(stderr=True)

DEFAULT_URL = "http://127.0.0.1:8801/mcp"
UrlOption = Annotated[str, typer.Option("--url", "-u", help="MCP URL of the peer; host:port works too.", envvar="MCPFED_URL")]


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="The mesh secret, sent as a bearer token (default: this machine's mesh, if any).", envvar="MCPFED_MESH_SECRET"),
]


def _mesh_headers(token: str | None) -> dict[str, str]:
    """`--token`, else the stored mesh's credential: once this machine is in a mesh, its peers (and relays) want it."""
    from federation.home import state_path
    from federation.membership import load_mesh

    stored = load_mesh(state_path())
    secret = token or (stored.secret if stored else None)
    return {"Authorization": f"Bearer {secret}"} if secret else {}


AllowedHostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host",
        help="Another name requests may be addressed to (Host), e.g. a reverse proxy's or a Docker service's (repeatable; '*' = any). "
        "IP addresses, localhost and this machine's names always work.",
    ),
]
HeaderTimeoutOption = Annotated[float, typer.Option(help="Seconds a client has to send a request's headers; slower connections get 408 and are closed.")]
MaxConnectionsOption = Annotated[
    int, typer.Option(help="Open connections one client address may hold (0 = no cap); more get 503. Behind a reverse proxy, every client shares its address.")
]
PrintSettingsOption = Annotated[
    bool, typer.Option("--print-settings", help="Print the effective settings (flags over MCPFED_* variables over defaults) as JSON and exit.")
]
CheckOption = Annotated[
    bool,
    typer.Option(
        "--check",
        help="Validate the settings (flags, MCPFED_* variables, the stored mesh, the mesh-secret rule) and exit 0; "
        "binds no port, loads no model, opens no database. For container healthchecks of a config and CI.",
    ),
]
TlsCertOption = Annotated[Path | None, typer.Option(help="PEM certificate (chain) to serve HTTPS (and WSS) with; URLs handed out become https://. Needs --tls-key.")]
TlsKeyOption = Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")]
PlainHttpOption = Annotated[
    bool,
    typer.Option(
        "--plain-http",
        help="Serve plain HTTP on a --host other than loopback knowingly: behind a TLS-terminating proxy, or on a trusted LAN/VPN. "
        "Without it such a --host needs --tls-cert/--tls-key.",
    ),
]
CaOption = Annotated[
    Path | None,
    typer.Option("--ca", help="PEM CA certificate(s) to trust besides the system's, for a mesh with its own CA (certificates are always verified)."),
]
ClientCaOption = Annotated[
    Path | None,
    typer.Option("--ca", help="PEM CA certificate(s) to trust besides the system's, for an https:// peer with its own CA.", envvar="MCPFED_CA"),
]


def _trust(ca: Path | None) -> None:
    """A client command's --ca: trusted by the clients it makes; a missing file is a one-line error."""
    from federation.tls import trust

    if ca is None:
        return
    if not ca.expanduser().is_file():
        _fail(f"--ca {ca}: no such file; give the path of the PEM CA certificate that signed the peer's.", 2)
    trust(ca)


PublicUrlOption = Annotated[
    str | None,
    typer.Option(help="Base URL others reach this at, advertised first: a container's published port, a reverse proxy, a TLS name."),
]


def _typed(ctx: typer.Context) -> dict[str, Any]:
    """The options typed on the command line (parameters are named after their settings fields).

    Only these are passed on to settings: a flag left at its default must not
    hide the `MCPFED_<FLAG>` variable of the same name.
    """
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}  # typer's own copy of click's ParameterSource
    return {name: value for name, value in ctx.params.items() if name not in _NOT_SETTINGS and getattr(sources[name], "name", "") == "COMMANDLINE"}


_NOT_SETTINGS = ("print_settings", "check")
"""Parameters that say what to do with the settings rather than being one."""


def _checked(make: Callable[[], Settings]) -> Settings:
    """Settings, or the one-line error (exit 2) naming the bad flag or variable."""
    try:
        return make()
    except ConfigError as exc:
        _fail(str(exc), 2)


def _print_if_asked(ctx: typer.Context, settings: MeshSettings) -> None:
    """`--print-settings` prints them and exits; else the start-up rules apply (a refusal comes before anything starts); `--check` then exits."""
    if ctx.params.get("print_settings"):
        sys.stdout.write(json.dumps(settings.shown(), indent=2) + "\n")
        raise typer.Exit(0)
    if problem := settings.bind_problem():
        _fail(problem, 2)
    if ctx.params.get("check"):
        mesh = f"mesh {settings.mesh_name!r}" if settings.mesh_secret else "no mesh"
        err.print(f"settings OK ({ctx.info_name}, {mesh}, host {settings.host}, {settings.scheme}); nothing was started", highlight=False)
        raise typer.Exit(0)


def _settings(ctx: typer.Context, settings_cls: type[Settings]) -> Settings:
    """Settings from the flags typed, over `MCPFED_<FLAG>` variables, over defaults; `--print-settings` shows them."""
    typed = _typed(ctx)
    settings = _checked(lambda: settings_cls(**typed))
    _print_if_asked(ctx, settings)
    return settings


@app.command(epilog="Every flag is also an environment variable MCPFED_<FLAG> (MCPFED_PORT, MCPFED_GPU_LAYERS, …); a repeatable flag's holds one value or a JSON list.")
def serve(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="GGUF file to serve, an embedded model (smollm2-135m, gemma3-270m), 'default' (smollm2-135m) or 'none'.")] = "default",
    name: Annotated[str | None, typer.Option(help="Display name (default: host name).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs a mesh secret, and --tls-cert/--tls-key or --plain-http.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = DEFAULT_PORT,
    gpu_layers: Annotated[str, typer.Option("--gpu-layers", help="'auto' (all when the build has GPU offload), -1 or N.")] = "auto",
    n_ctx: Annotated[int, typer.Option("--ctx", help="Context window in tokens.")] = DEFAULT_CONTEXT,
    threads: Annotated[int | None, typer.Option(help="CPU threads for the model (default: all cores).")] = None,
    queue_limit: Annotated[int, typer.Option(help="Calls that may wait for the model; more are refused with a 'busy' error.")] = DEFAULT_QUEUE_LIMIT,
    queue_per_caller: Annotated[
        int | None, typer.Option(help="Calls one caller may have waiting (default: half the queue limit; at most the limit).")
    ] = None,
    home: Annotated[Path | None, typer.Option(help="State directory (key, database).")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the store (default: SQLite in the state dir).")] = None,
    notes: Annotated[Path | None, typer.Option(help="Folder of Markdown notes to offer as search_notes/read_note.")] = None,
    share: Annotated[
        list[str] | None, typer.Option(help='Offer a stdio MCP server\'s tools: NAME="command args" (repeatable).')
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(help="Offer only these tools of a share: NAME:TOOL,TOOL (repeatable; just TOOL,TOOL with one --share). Default: all."),
    ] = None,
    mesh: Annotated[str | None, typer.Option(help="Mesh this peer belongs to; peers of other meshes are ignored.")] = None,
    mdns: Annotated[str, typer.Option(help="mDNS: 'auto' (follow --host), 'off', or interfaces/IPv4s, comma-separated.")] = "auto",
    peers: Annotated[list[str] | None, typer.Option("--peer", help="A peer URL to add statically (repeatable), e.g. when multicast is blocked.")] = None,
    relays: Annotated[list[str] | None, typer.Option("--relay", help="Relay base URL to attach to (repeatable; default: the mesh's).")] = None,
    allowed_hosts: AllowedHostOption = None,
    header_timeout: HeaderTimeoutOption = HEADER_TIMEOUT_SECONDS,
    max_connections_per_address: MaxConnectionsOption = MAX_CONNECTIONS_PER_ADDRESS,
    rate_limit: Annotated[str, typer.Option(help="Requests each caller (client address) may send to /mcp: 20/s, 600/m, 5000/h or 'off'; 429 past it.")] = DEFAULT_RATE_LIMIT,
    rate_burst: Annotated[int | None, typer.Option(help="Requests a caller may send at once (default: two seconds' worth of --rate-limit).")] = None,
    share_models: Annotated[bool, typer.Option(help="Let mesh members pull the served model and <home>/models/*.gguf (`mcpfed pull`).")] = True,
    share_rate: Annotated[float, typer.Option(help="MB/s this peer sends model chunks at, all pulls together (0 = no cap); tool calls always come first.")] = 0.0,
    model_chunk_bytes: Annotated[int, typer.Option(help="Chunk size of the manifests this peer signs for the models it shares.")] = CHUNK_BYTES,
    lend: Annotated[bool, typer.Option(help="Lend this machine's compute for other peers' split models (ggml RPC, reached only through the mesh).")] = False,
    lend_mem: Annotated[str, typer.Option(help="Memory lent with --lend: 512MB, 2GB, ...")] = "2GB",
    split: Annotated[str | None, typer.Option(help="Split --model over lenders of the mesh: 'auto' (every usable one) or N (the best N).")] = None,
    copies: Annotated[int, typer.Option(help="Run N peers on this host: each its own process, identity, home (<home>/copies/<i>), name (<name>-<i>), port; shared imported code. SIGTERM stops all.")] = 1,
    public_url: PublicUrlOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    plain_http: PlainHttpOption = False,
    ca: CaOption = None,
    print_settings: PrintSettingsOption = False,
    check: CheckOption = False,
) -> None:
    """Run a peer until Ctrl-C (or SIGTERM) and print its MCP URL. A --model NAME or sha256:HEX not on disk is pulled from the mesh first."""
    from federation.settings import PeerSettings

    settings = _settings(ctx, PeerSettings)
    if settings.copies > 1:
        _serve_copies(settings)
    _run_until_interrupted(_serve, settings)


def _serve_copies(settings: Any) -> NoReturn:
    """`serve --copies N`: N peers forked from this process (federation.fleet); exits when all have stopped."""
    from federation.fleet import copy_problem, run_copies

    if problem := copy_problem(settings):
        _fail(problem, 2)
    raise typer.Exit(run_copies(settings, partial(_run_until_interrupted, _serve), lambda line: err.print(line, highlight=False)))


class _StopSignals:
    """SIGINT and SIGTERM (Ctrl-C, `docker stop`, systemd) for a command that runs until stopped.

    The first signal ends the `until_signalled()` block, so the command's
    `async with` stops what it started, in order, and the process exits 0; a
    signal that comes while it is still starting (a model loading) ends the
    block as soon as it begins. A second signal exits at once with 128 + its
    number, without the rest of the stop (`os._exit`: no interpreter teardown
    racing a model thread).
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._block: anyio.CancelScope | None = None

    @contextlib.contextmanager
    def until_signalled(self) -> Iterator[None]:
        with anyio.CancelScope() as block:
            if self.received is not None:
                block.cancel()
            self._block = block
            yield

    async def watch(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if self.received is not None:
                    err.print(f"{name} again: exiting without finishing the stop")
                    os._exit(128 + signum)
                self.received = signal.Signals(signum)
                err.print(f"{name}: stopping (answering calls in flight, leaving the mesh); send it again to exit at once")
                if self._block is not None:
                    self._block.cancel()


def _log_whole_lines() -> None:
    """Into a pipe or file (`docker logs`, systemd, `2> peer.log`), one log record is one line.

    The MCP SDK's servers install a Rich handler when they are made, on a console 80
    columns wide when stderr is no terminal: every long warning came out broken over
    several lines. Set before any server is made, this handler leaves theirs unused
    (`logging.basicConfig` does nothing once the root logger has one). In a terminal
    Rich's own stays.
    """
    if not sys.stderr.isatty():
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


_LOOP = {"use_uvloop": find_spec("uvloop") is not None}
"""Peers and relays run on uvloop where it is installed (not on Windows): a hop through a peer
is ~0.1 ms (~8 %) cheaper than on asyncio's own loop (`bench.hops`, peers in separate processes).
"""


def _run_until_interrupted(main: Callable[[Any, _StopSignals], Awaitable[None]], settings: Any) -> None:
    """Run `main(settings, signals)`; it stops cleanly on SIGINT or SIGTERM, handled from before anything starts."""
    _log_whole_lines()

    async def run() -> None:
        signals = _StopSignals()
        async with anyio.create_task_group() as task_group:
            await task_group.start(signals.watch)
            await main(settings, signals)
            task_group.cancel_scope.cancel()

    anyio.run(run, backend_options=_LOOP)
    err.print("stopped")


async def _serve(settings: Any, signals: _StopSignals) -> None:
    from federation.node import Node
    from federation.pull.mesh import pull_for_serve
    from federation.pull.progress import PullBar

    with signals.until_signalled(), PullBar(err, f"pulling {settings.model}", quiet_until_pulling=True) as bar:
        settings = await pull_for_serve(settings, on_progress=bar.show, on_warning=err.print)
    if signals.received is not None:
        return
    async with Node(settings) as node:
        with signals.until_signalled():
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
    token: TokenOption = None,
    ca: ClientCaOption = None,
) -> None:
    """Ask a peer's model; the answer streams as it is generated."""
    _trust(ca)
    anyio.run(_ask, url, _mesh_headers(token), prompt, max_tokens, temperature, raw)


async def _ask(url: str, headers: dict[str, str], prompt: str, max_tokens: int, temperature: float, raw: bool) -> None:
    from federation.client import call_tool, connect

    async def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    arguments: dict[str, Any]
    if raw:
        tool, arguments = "generate", {"prompt": prompt}
    else:
        tool, arguments = "chat", {"messages": [{"role": "user", "content": prompt}]}
    arguments |= {"max_tokens": max_tokens, "temperature": temperature}
    async with connect(url, headers=headers) as client:
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
    token: TokenOption = None,
    ca: ClientCaOption = None,
) -> None:
    """Call any tool on a peer and print its result as JSON."""
    _trust(ca)
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        _fail(f"arguments are not valid JSON ({exc.msg} at column {exc.colno}); pass an object like '{{\"prompt\": \"hi\"}}'.", 2)
    if not isinstance(parsed, dict):
        _fail("arguments must be a JSON object, like '{\"prompt\": \"hi\"}'.", 2)
    anyio.run(_call, url, _mesh_headers(token), tool, parsed)


async def _call(url: str, headers: dict[str, str], tool: str, arguments: dict[str, Any]) -> None:
    from federation.client import call_tool, connect, result_text

    async with connect(url, headers=headers) as client:
        result = await call_tool(client, tool, arguments)
    if result.structured_content is not None:
        out.print_json(data=result.structured_content)
    else:
        out.print(result_text(result), highlight=False)


@app.command()
def tools(url: UrlOption = DEFAULT_URL, token: TokenOption = None, ca: ClientCaOption = None) -> None:
    """List the tools a peer offers."""
    _trust(ca)
    anyio.run(_tools, url, _mesh_headers(token))


async def _tools(url: str, headers: dict[str, str]) -> None:
    from federation.client import connect

    async with connect(url, headers=headers) as client:
        listed = await client.list_tools()
    for tool in listed.tools:
        out.print(f"[bold]{tool.name}[/]  {escape(_summary(tool.description))}", highlight=False)


def _summary(description: str | None) -> str:
    """A tool description's first paragraph on one line: a docstring wrapped in its source must not be cut at its first line break."""
    paragraph = (description or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


@app.command()
def models(
    paths: Annotated[list[Path] | None, typer.Argument(help="Extra .gguf files or folders to list.")] = None,
    home: Annotated[Path | None, typer.Option(help="State directory; its models/ folder is listed.", envvar="MCPFED_HOME")] = None,
    mesh: Annotated[bool, typer.Option("--mesh", help="List what the peers of the mesh share instead (name, size, quantisation, sha256, holders).")] = False,
) -> None:
    """List local models: the embedded ones, the state dir's models/, and PATHS; with --mesh, the mesh's."""
    from federation.models import find_models

    if mesh:
        anyio.run(_mesh_models, home)
        return
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


async def _mesh_models(home: Path | None) -> None:
    from rich.table import Table

    from federation.api import Mesh
    from federation.pull.mesh import mesh_models

    async with Mesh.connect(name="models", home=home) as member:
        found = mesh_models(member.node)
    if not found:
        err.print("no peer this machine found shares a model (are they running, in this mesh, and sharing?)")
        return
    table = Table(box=None)
    for column in ("name", "size", "quant", "sha256", "holders"):
        table.add_column(column, no_wrap=column == "sha256")
    for entry in found:
        shared = entry.model
        table.add_row(shared.name, f"{shared.size_bytes / 1e6:.0f} MB", shared.quantization, shared.sha256, ", ".join(peer.name for peer in entry.holders))
    out.print(table)


@app.command()
def pull(
    model: Annotated[str, typer.Argument(help="The model's name (as `mcpfed models --mesh` lists it) or sha256:HEX.")],
    home: Annotated[Path | None, typer.Option(help="State directory; the model lands in its models/ folder.", envvar="MCPFED_HOME")] = None,
    peers: Annotated[list[str] | None, typer.Option("--peer", help="A peer URL to ask besides those mDNS and relays find (repeatable).")] = None,
    relays: Annotated[list[str] | None, typer.Option("--relay", help="Relay base URL to look for holders through (repeatable; default: the mesh's).")] = None,
    mdns: Annotated[str, typer.Option(help="mDNS: 'auto', 'off', or interfaces/IPv4s, comma-separated.")] = "auto",
) -> None:
    """Fetch a model from every peer that shares it, verified chunk by chunk; Ctrl-C and run again to resume."""
    from federation.pull.progress import PullBar

    async def run() -> None:
        from federation.api import Mesh
        from federation.home import state_dir
        from federation.pull.mesh import pull_model

        extra: dict[str, Any] = {"relays": relays} if relays else {}
        async with Mesh.connect(name="pull", home=home, peers=peers or [], mdns=mdns, **extra) as mesh:
            with PullBar(err, model) as bar:
                report = await pull_model(mesh.node, model, state_dir(home) / "models", on_progress=bar.show, on_warning=err.print,
                                          on_wait=lambda: err.print(f"another pull of {model} is running here; waiting for it"))
        for peer_id in report.liars:
            err.print(f"[red]holder {report.holders[peer_id].name} ({peer_id}) served a chunk that did not match the manifest; dropped and recorded[/]")
        out.print(str(report.path), highlight=False, soft_wrap=True)

    try:
        anyio.run(run)
    except KeyboardInterrupt:
        _fail(f"interrupted; the verified chunks are kept: run `mcpfed pull {model}` again to resume", 130)


@app.command()
def gateway(
    ctx: typer.Context,
    mesh: Annotated[str | None, typer.Option(help="Mesh to join (default: the one `mcpfed join` stored, if any).")] = None,
    name: Annotated[str, typer.Option(help="Name this light member shows to the mesh.")] = "gateway",
    peers: Annotated[list[str] | None, typer.Option("--peer", help="A peer's URL to know without mDNS (repeatable).")] = None,
    mdns: Annotated[str, typer.Option(help="'auto' (loopback), 'off', or interfaces to browse on.")] = "auto",
    home: Annotated[Path | None, typer.Option(help="State directory.")] = None,
    print_settings: PrintSettingsOption = False,
    check: CheckOption = False,
) -> None:
    """Speak MCP over stdio for Claude Desktop / Gemini CLI, fronting the whole mesh (no model here).

    Clients list tools once, at start-up, so the gateway answers only after its
    first look at the mesh: each --peer admitted, the peers it knew last time
    checked again, an mDNS browse given 1.5 s, and their tools listed. That
    takes about 1.5 s on a LAN and 5 s at most; then it prints
    "gateway ready: N peers (names) in T s" (and any that did not answer) on
    stderr. A --peer that cannot be admitted (unreachable, another mesh, not a
    peer) stops the gateway with an error that says why.
    """
    from federation.api import member_settings
    from federation.gateway import run_gateway
    from federation.settings import PeerSettings

    typed = _typed(ctx)
    name = typed.get("name") or os.environ.get(PeerSettings.env_name("name"), "").strip() or name
    # its own identity under <state>/clients/<name>, never a local serve's; the stored mesh unless --mesh
    settings = _checked(lambda: member_settings(name, home, mesh, **{k: v for k, v in typed.items() if k in ("peers", "mdns")}))
    _print_if_asked(ctx, settings)
    anyio.run(run_gateway, settings)


def _parse_since(value: str | None) -> Any:
    from datetime import datetime, timedelta

    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return datetime.now(UTC) - timedelta(seconds=float(value[:-1]) * units[value[-1]])
    except (KeyError, ValueError, IndexError):
        _fail(f"--since takes a duration like 30m, 2h or 7d, not {value!r}.", 2)


LedgerSource = tuple[str, list[dict[str, Any]], list[dict[str, Any]], str | None]
"""One ledger to check: its label, rows, signed heads, and the peer that must have signed it (when known)."""


def _ledger_sources(home: Path | None, db: str | None, file: Path | None) -> list[LedgerSource]:
    """The ledgers a `ledger` command reads: an export file, one database URL, or the state dir's own and its light members'."""
    from federation.home import state_dir
    from federation.identity import Identity
    from federation.ledger import read_export
    from federation.store import Store, ledger_databases

    if file is not None:
        try:
            with file.open(encoding="utf-8") as lines:
                return [(label, rows, heads, None) for label, rows, heads in read_export(lines)]
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            _fail(f"{file} is not a ledger export: {exc}. Make one with `mcpfed ledger export --out FILE`.", 2)
    sources: list[LedgerSource] = []
    for label, url, directory in [("this peer", db, None)] if db else ledger_databases(state_dir(home)):
        store = Store(url)
        try:
            rows, heads = store.rows(), store.heads()
        finally:
            store.close()
        # the state dir's own key anchors its ledger: a chain re-signed under another key does not pass for it
        expected = Identity.load_or_create(directory).peer_id if directory is not None and (directory / "identity.pem").exists() else None
        sources.append((label, rows, heads, expected))
    return sources


@app.command()
def ledger(
    action: Annotated[
        str,
        typer.Argument(help="'show' (default: totals of verified rows), 'verify' (check the hash chain, signatures and receipts) or 'export'."),
    ] = "show",
    by: Annotated[str, typer.Option(help="Group by 'peer' (who served) or 'tool'.")] = "peer",
    since: Annotated[str | None, typer.Option(help="Only calls newer than this, e.g. 30m, 2h, 7d.")] = None,
    home: Annotated[Path | None, typer.Option(help="State directory whose ledger to read.", envvar="MCPFED_HOME")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of one store to read instead of the state dir's.", envvar="MCPFED_DB")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read a ledger export (from `ledger export`) instead of a database.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="export: write to this file instead of standard output.")] = None,
) -> None:
    """Who served how many calls and tokens, from this machine's hash-chained, signed ledger.

    The state dir's own ledger and those of its light members (`Mesh` scripts,
    the gateway: `<state>/clients/<name>`) are read together; the `ledger`
    column says which recorded each row. Only rows that verify are counted;
    `verify` names every row that does not and exits 1; `export` writes the
    ledger as JSON lines that `verify --file` checks on any machine.
    """
    from federation.ledger import export_lines, verify

    if action not in ("show", "verify", "export"):
        _fail(f"ledger has no action {action!r}; use `mcpfed ledger show`, `mcpfed ledger verify` or `mcpfed ledger export`.", 2)
    if by not in ("peer", "tool"):
        _fail(f"--by takes 'peer' or 'tool', not {by!r}.", 2)
    after = _parse_since(since)
    sources = _ledger_sources(home, db, file)
    if action == "export":
        lines = [line for label, rows, heads, _ in sources for line in export_lines(label, rows, heads)]
        if out_file is None:
            sys.stdout.write("\n".join(lines) + "\n")
            return
        try:
            out_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write {out_file}: {exc.strerror or exc}; choose a writable path for --out.")
        err.print(f"wrote {sum(len(rows) for _, rows, _, _ in sources)} rows of {len(sources)} ledger(s) to {escape(str(out_file))}")
        return
    reports = [(label, verify(rows, heads, expected_peer=expected)) for label, rows, heads, expected in sources]
    if action == "verify":
        for label, report in reports:
            for finding in report.findings:
                err.print(f"[red]{escape(label)}[/], {escape(str(finding))}", highlight=False, soft_wrap=True)
            signers = ", ".join(report.peers) or "nobody yet"
            out.print(f"{escape(label)}: {report.rows - report.failed} of {report.rows} rows verify (chain signed by {signers})", highlight=False)
        receipts = sum(report.receipts for _, report in reports)
        held = sum(fact.get("receipt_ok") is True for _, report in reports for fact in report.facts)
        out.print(f"{held} of {receipts} receipts verify", highlight=False)
        raise typer.Exit(1 if any(not report.ok for _, report in reports) else 0)
    out.print(_ledger_table(reports, by, after))
    for label, report in reports:
        if not report.ok:
            err.print(f"{escape(label)}'s ledger does not verify ({report.failed} rows, {len(report.findings)} findings): their claims are not counted; `mcpfed ledger verify` names them")


def _ledger_table(reports: list[tuple[str, Any]], by: str, after: Any) -> Any:
    """Totals of each ledger's verified rows, and one line per ledger for the rows that failed (counted, never their claims)."""
    from rich.table import Table

    from federation.ledger import summarize

    table = Table(by, "ledger", "role", "calls", "ok", "tokens in", "tokens out", "avg ms", "receipts ✓", "receipts ✗", box=None)
    for label, report in reports:
        for row in summarize(report.facts, by=by, since=after):
            cells = (row[k] for k in ("key", "role", "calls", "ok", "tokens_in", "tokens_out", "avg_ms", "receipts_ok", "receipts_bad"))
            key, *rest = (escape(str(cell)) for cell in cells)
            table.add_row(key, escape(label), *rest)
        if report.failed:
            table.add_row("[red](fails verification)[/]", escape(label), "-", str(report.failed), *["-"] * 6)
    return table


@app.command()
def peers(
    url: Annotated[str | None, typer.Option("--url", "-u", help="Ask this running peer (its URL) instead of reading the state dir.")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the table on screen, updated live from the peer's /events.")] = False,
    home: Annotated[Path | None, typer.Option(help="State directory of the peer whose table to read.", envvar="MCPFED_HOME")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the store (default: SQLite in the state dir).", envvar="MCPFED_DB")] = None,
    token: TokenOption = None,
) -> None:
    """Show the peer table: who this peer knows, how it reaches them, whether they are alive."""
    from federation.urls import user_url

    if watch:
        try:
            with _keys_unechoed():
                anyio.run(_watch_peers, user_url(url or DEFAULT_URL), _mesh_headers(token))
        except KeyboardInterrupt:
            pass
        return
    if url is not None:
        from federation.watch import fetch_peers

        source = user_url(url)
        rows = anyio.run(partial(fetch_peers, source, headers=_mesh_headers(token)))
    else:
        from federation.discovery.persist import stored_peers

        rows, source = stored_peers(home, db)
    if not rows:
        err.print(f"no peers known to {source} (is `mcpfed serve` running? peers appear within a second on a LAN)")
        return
    out.print(_peer_table(rows))


_STATUS_STYLE = {"up": "green", "suspect": "yellow", "dead": "red"}


def _peer_table(rows: list[PeerRow]) -> Any:
    from rich.table import Table

    from federation.urls import address_of

    table = Table(box=None)
    for column in ("name", "id", "address", "via", "models", "tools", "status", "in-flight", "latency"):
        table.add_column(column, no_wrap=column in ("id", "address"))
    for row in rows:
        style = _STATUS_STYLE.get(row.status, "")
        table.add_row(
            row.name,
            row.id,
            address_of(row.url),
            row.via,
            ", ".join(row.models) or "-",
            str(row.tools),
            f"[{style}]{row.status}[/]" if style else row.status,
            str(row.in_flight),
            "-" if row.latency_ms is None else f"{row.latency_ms:.1f} ms",
        )
    return table


@contextlib.contextmanager
def _keys_unechoed() -> Iterator[None]:
    """Keep the terminal from echoing keys (the `^C` of Ctrl-C included) while a live view is on screen.

    An echoed key lands where the live view left its cursor; at the end of a
    full-width line it wraps, the view's idea of its height is off by one, and
    its last redraw leaves a stale line above the table.
    """
    try:
        import termios
    except ImportError:  # not a POSIX terminal: nothing to do
        yield
        return
    if not sys.stdin.isatty():
        yield
        return
    descriptor = sys.stdin.fileno()
    saved = termios.tcgetattr(descriptor)
    quiet = termios.tcgetattr(descriptor)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(descriptor, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(descriptor, termios.TCSANOW, saved)


async def _watch_peers(url: str, headers: dict[str, str]) -> None:
    from rich.live import Live

    from federation.watch import follow_peers

    live = Live(_peer_table([]), console=out, refresh_per_second=8)

    def show(rows: list[PeerRow]) -> None:
        if not live.is_started:
            live.start()  # only once connected, so a wrong URL prints just the error
        live.update(_peer_table(rows))

    try:
        await follow_peers(url, show, headers=headers)
    finally:
        if live.is_started:
            live.stop()


@app.command()
def tui(
    node: Annotated[
        str | None,
        typer.Option("--node", "-n", "--url", "-u", help="URL of the peer to watch (default http://127.0.0.1:8801; host:port works; a relay's <relay>/p/<peer-id> too).", envvar="MCPFED_NODE"),
    ] = None,
    observe: Annotated[bool, typer.Option("--observe", help="Start a light peer of our own (no model) that joins the mesh, and watch it.")] = False,
    mesh: Annotated[str | None, typer.Option(help="With --observe: the mesh our light peer joins (default: the one `mcpfed join` stored).")] = None,
    token: TokenOption = None,
) -> None:
    """Watch the mesh live: peers, topology, calls, and a prompt box that asks the mesh."""
    from federation.urls import user_url

    if observe and node:
        _fail("--observe watches a peer of its own; leave out --node, or drop --observe to watch that node.", 2)
    if mesh and not observe:
        _fail("--mesh chooses the mesh of --observe's own peer; add --observe, or leave out --mesh to watch --node's mesh.", 2)
    from tui.app import run

    run(user_url(node) if node else None, observe=observe, token=token, mesh=mesh)


@app.command("relay", epilog="Every flag is also an environment variable MCPFED_RELAY_<FLAG> (MCPFED_RELAY_PORT, …).")
def relay_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs a mesh secret, and --tls-cert/--tls-key or --plain-http.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = DEFAULT_RELAY_PORT,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the card directory; share one Postgres between relays.")] = None,
    public_url: PublicUrlOption = None,
    max_streams: Annotated[int, typer.Option(help="Requests in flight per peer tunnel.")] = 64,
    max_request_bytes: Annotated[int, typer.Option(help="Largest request body forwarded to a peer.")] = MAX_REQUEST_BYTES,
    home: Annotated[Path | None, typer.Option(help="State directory (mesh, directory database); MCPFED_HOME works too.")] = None,
    allowed_hosts: AllowedHostOption = None,
    header_timeout: HeaderTimeoutOption = HEADER_TIMEOUT_SECONDS,
    max_connections_per_address: Annotated[
        int | None, typer.Option(help="Open connections one client address may hold (0 = no cap); more get 503. Default: half the open files the relay may hold (peers meeting through it hold a session per pair).")
    ] = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    plain_http: PlainHttpOption = False,
    ca: CaOption = None,
    print_settings: PrintSettingsOption = False,
    check: CheckOption = False,
) -> None:
    """Run a relay until Ctrl-C: peers behind NAT attach to it, clients reach them at <relay>/p/<id>/mcp."""
    from federation.relay.settings import RelaySettings

    _run_until_interrupted(_relay, _settings(ctx, RelaySettings))


async def _relay(settings: Any, signals: _StopSignals) -> None:
    from federation.relay.server import Relay

    async with Relay(settings) as relay:
        with signals.until_signalled():
            mesh = f"mesh {settings.mesh_name!r}" if settings.mesh_secret else "no mesh: open to anyone who reaches it"
            err.print(f"relay serving ({mesh}); peers attach to {relay.public_url}, Ctrl-C stops it")
            out.print(relay.public_url, highlight=False)
            await anyio.sleep_forever()


HomeOption = Annotated[Path | None, typer.Option(help="State directory.", envvar="MCPFED_HOME")]


@app.command()
def init(
    mesh: Annotated[str, typer.Option("--mesh", help="Name of the new mesh.")],
    relay: Annotated[list[str] | None, typer.Option("--relay", help="Relay base URL members use (repeatable).")] = None,
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
    relay: Annotated[list[str] | None, typer.Option("--relay", help="Relay base URL to put in the token (repeatable; remembered here too).")] = None,
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
