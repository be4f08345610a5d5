"""Every flag of a command with settings is also `MCPFED_<FLAG>` (`MCPFED_RELAY_<FLAG>` for the relay), as the README says.

The cases come from the commands' own options, so a flag added without a way
to set it from the environment fails here. `--print-settings` shows what a
command would run with, without starting anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from federation import Mesh
from federation.cli import app
from federation.errors import ConfigError
from tests.support.cli import assert_one_line_error, mcpfed

COMMANDS = {"serve": "MCPFED_", "gateway": "MCPFED_", "relay": "MCPFED_RELAY_"}
"""The commands that run on settings, and the prefix of their variables."""

_A_FILE = str(Path(__file__).resolve())

SAMPLES: dict[tuple[str, str], tuple[str, Any]] = {
    ("serve", "--model"): ("none", None),
    ("serve", "--name"): ("alice", "alice"),
    ("serve", "--host"): ("127.0.0.2", "127.0.0.2"),
    ("serve", "--port"): ("9123", 9123),
    ("serve", "--gpu-layers"): ("7", 7),
    ("serve", "--ctx"): ("2048", 2048),
    ("serve", "--threads"): ("3", 3),
    ("serve", "--home"): ("{tmp}", "{tmp}"),
    ("serve", "--db"): ("sqlite:///{tmp}/other.db", "sqlite:///{tmp}/other.db"),
    ("serve", "--notes"): ("{tmp}", "{tmp}"),
    ("serve", "--share"): ("e=/bin/true", ["e=/bin/true"]),
    ("serve", "--allow"): ('["e:read_file,list_directory", "e:stat"]', ["e:read_file,list_directory", "e:stat"]),
    ("serve", "--queue-limit"): ("8", 8),
    ("serve", "--queue-per-caller"): ("2", 2),
    ("serve", "--mesh"): ("m1", "m1"),
    ("serve", "--mdns"): ("off", "off"),
    ("serve", "--peer"): ("http://127.0.0.1:9", ["http://127.0.0.1:9"]),
    ("serve", "--relay"): ('["http://127.0.0.1:8800", "http://127.0.0.1:8900"]', ["http://127.0.0.1:8800", "http://127.0.0.1:8900"]),
    ("serve", "--allowed-host"): ('["peer.example.com", "Box"]', ["peer.example.com", "box"]),
    ("serve", "--header-timeout"): ("2.5", 2.5),
    ("serve", "--max-connections-per-address"): ("64", 64),
    ("serve", "--rate-limit"): ("20/s", "20/s"),
    ("serve", "--rate-burst"): ("5", 5),
    ("serve", "--share-models"): ("false", False),
    ("serve", "--share-rate"): ("12.5", 12.5),
    ("serve", "--model-chunk-bytes"): ("1048576", 1048576),
    ("serve", "--copies"): ("4", 4),
    ("serve", "--public-url"): ("http://peer.example:8802/", "http://peer.example:8802"),
    ("serve", "--lend"): ("true", True),
    ("serve", "--lend-mem"): ("512MB", "512MB"),
    ("serve", "--split"): ("2", "2"),
    ("gateway", "--mesh"): ("m1", "m1"),
    ("gateway", "--name"): ("desk", "desk"),
    ("gateway", "--peer"): ("http://127.0.0.1:9", ["http://127.0.0.1:9"]),
    ("gateway", "--mdns"): ("off", "off"),
    ("gateway", "--home"): ("{tmp}", "{tmp}/clients/gateway"),
    ("relay", "--host"): ("127.0.0.2", "127.0.0.2"),
    ("relay", "--port"): ("9124", 9124),
    ("relay", "--db"): ("sqlite:///{tmp}/cards.db", "sqlite:///{tmp}/cards.db"),
    ("relay", "--public-url"): ("http://relay.example:8800", "http://relay.example:8800"),
    ("relay", "--max-streams"): ("7", 7),
    ("relay", "--max-request-bytes"): ("4096", 4096),
    ("relay", "--home"): ("{tmp}", "{tmp}"),
    ("relay", "--allowed-host"): ("relay", ["relay"]),
    ("relay", "--header-timeout"): ("3", 3.0),
    ("relay", "--max-connections-per-address"): ("64", 64),
    ("serve", "--plain-http"): ("true", True),
    ("relay", "--plain-http"): ("true", True),
    **{
        (command, flag): (_A_FILE, _A_FILE)  # any file passes as a path; what is inside is read when the server starts
        for command in ("serve", "relay")
        for flag in ("--tls-cert", "--tls-key", "--ca")
    },
}
"""(command, flag) -> (the variable's value, the setting it must produce); `{tmp}` is the test's folder."""

NEEDS: dict[tuple[str, str], dict[str, str]] = {
    ("serve", "--allow"): {"MCPFED_SHARE": "e=/bin/true"},
    ("serve", "--tls-cert"): {"MCPFED_TLS_KEY": _A_FILE},
    ("serve", "--tls-key"): {"MCPFED_TLS_CERT": _A_FILE},
    ("relay", "--tls-cert"): {"MCPFED_RELAY_TLS_KEY": _A_FILE},
    ("relay", "--tls-key"): {"MCPFED_RELAY_TLS_CERT": _A_FILE},
}
"""Other variables a sample only makes sense with (an --allow names a share)."""


def settings_options(command: str) -> list[Any]:
    """The options of `command` that are settings (all but --print-settings, --check and --help)."""
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return [p for p in params if p.param_type_name == "option" and p.name not in ("print_settings", "check", "help")]


CASES = [(command, option.opts[0]) for command in COMMANDS for option in settings_options(command)]


def clean_env(tmp_path: Path, **variables: str) -> dict[str, str | None]:
    """No MCPFED_* from the developer's shell, a home of the test's own, then `variables`."""
    unset: dict[str, str | None] = {key: None for key in os.environ if key.startswith("MCPFED_")}
    return unset | {"MCPFED_HOME": str(tmp_path / "home")} | variables


def effective(command: str, tmp_path: Path, *flags: str, **variables: str) -> dict[str, Any]:
    """What `mcpfed COMMAND FLAGS --print-settings` prints, run in-process with `variables` set."""
    done = CliRunner().invoke(app, [command, *flags, "--print-settings"], env=clean_env(tmp_path, **variables))
    assert done.exit_code == 0, done.output
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize(("command", "flag"), CASES, ids=[f"{c} {f}" for c, f in CASES])
def test_each_flag_is_also_an_environment_variable(tmp_path: Path, command: str, flag: str) -> None:
    assert (command, flag) in SAMPLES, f"{command} {flag} has no sample here: add one so its variable is tested"
    raw, expected = SAMPLES[command, flag]
    variable = COMMANDS[command] + flag.removeprefix("--").replace("-", "_").upper()
    field = next(option.name for option in settings_options(command) if option.opts[0] == flag)
    shown = effective(command, tmp_path, **NEEDS.get((command, flag), {}), **{variable: raw.format(tmp=tmp_path)})
    if isinstance(expected, str):
        expected = expected.format(tmp=tmp_path)
    assert shown[field] == expected, f"{variable}={raw} gave {field}={shown[field]!r}"


def test_every_sample_names_a_flag_there_is() -> None:
    assert set(SAMPLES) <= set(CASES)


def test_a_flag_beats_its_variable_and_an_untyped_flag_leaves_it_alone(tmp_path: Path) -> None:
    assert effective("serve", tmp_path, "--port", "9001", MCPFED_PORT="9000")["port"] == 9001
    assert effective("serve", tmp_path, "--ctx", "1024", MCPFED_PORT="9000")["port"] == 9000


def test_serve_help_shows_the_defaults_the_peer_runs_with(tmp_path: Path) -> None:
    shown = effective("serve", tmp_path)
    for option in settings_options("serve"):
        if option.default is not None and option.name != "gpu_layers":  # 'auto' is shown as None
            assert shown[option.name] == option.default, option.name


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MCPFED_PORT", "abc", "port='abc' (from MCPFED_PORT) is not allowed: input should be a valid integer"),
        ("MCPFED_SHARE", '["a=x"', "MCPFED_SHARE starts with '[' but is not a JSON list"),
        ("MCPFED_GPU_LAYERS", "lots", "--gpu-layers takes 'auto', -1 (all) or a number of layers, not 'lots'"),
        ("MCPFED_RATE_LIMIT", "fast", "a rate limit looks like 20/s, 600/m or 5000/h (or 'off'), not 'fast'"),
        ("MCPFED_LEND_MEM", "lots", "--lend-mem takes a size such as 512MB or 2GB, not 'lots'"),
        ("MCPFED_SPLIT", "many", "--split takes 'auto' (every usable lender) or a number of lenders"),
        ("MCPFED_ALLOWED_HOST", "http://peer.example.com", "is not a host name; give a bare name like peer.example.com"),
    ],
)
async def test_a_bad_variable_is_one_line_naming_it(env: dict[str, str], variable: str, value: str, says: str) -> None:
    done = await mcpfed("serve", "--print-settings", env=env | {variable: value})  # fails before it would start
    assert_one_line_error(done, 2, says)


@pytest.mark.anyio
async def test_mesh_connect_with_a_bad_setting_raises_a_config_error_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^health_interval=-1 is not allowed: input should be greater than 0\.$"):
        async with Mesh.connect(home=tmp_path, mdns="off", health_interval=-1):
            pass


def test_every_command_and_every_option_has_help() -> None:
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        assert command.help, f"mcpfed {name} has no help text"
        for param in command.params:
            assert getattr(param, "help", None), f"mcpfed {name}: {param.name} has no help text"


def test_a_gateway_reads_the_environment_but_serves_nothing_it_names(tmp_path: Path) -> None:
    """MCPFED_SHARE/NOTES/MODEL set up this machine's `serve`: the gateway a client starts must not run a second copy."""
    notes = tmp_path / "notes"
    notes.mkdir()
    serving = {"MCPFED_SHARE": "fs=cat", "MCPFED_NOTES": str(notes), "MCPFED_MODEL": "default"}
    assert effective("serve", tmp_path, **serving)["share"] == ["fs=cat"], "serve takes them"
    shown = effective("gateway", tmp_path, MCPFED_HEALTH_INTERVAL="7", **serving)
    assert (shown["share"], shown["notes"], shown["model"]) == ([], None, None)
    assert shown["health_interval"] == 7, "every other variable is read"
