"""contrib/systemd: the units parse (systemd-analyze verify where it is installed), behave as a service must, and their ExecStart runs.

Not run here: systemd itself starting them (no systemd as PID 1 in this sandbox).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from federation.const import STOP_GRACE_SECONDS
from tests.support.cli import EXIT_BOUND, mcpfed_sync
from tests.support.paths import REPO
from tests.support.pki import make_pki

UNITS = REPO / "contrib" / "systemd"
INSTALLED = "/opt/mcpfed/bin/mcpfed"
"""Where the units expect the virtualenv's `mcpfed` (the Docker image uses the same venv path)."""


def _parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (keys may repeat, as systemd allows)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if match := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(match.group(1), {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None and sep, f"{path.name}: {line!r} is outside a section or not KEY=VALUE"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs if value}


@pytest.fixture
def joined(tmp_path: Path) -> dict[str, str]:
    """A join token, as the EnvironmentFile holds it."""
    admin = tmp_path / "admin"
    assert mcpfed_sync("init", "--mesh", "service", "--home", str(admin)).returncode == 0
    return {"MCPFED_JOIN_TOKEN": mcpfed_sync("invite", "--home", str(admin)).stdout.strip()}


@pytest.mark.parametrize(("unit", "command"), [("mcpfed-peer", "serve"), ("mcpfed-relay", "relay")])
def test_the_unit_restarts_drains_logs_to_the_journal_and_runs_unprivileged(unit: str, command: str) -> None:
    service = _parse(UNITS / f"{unit}.service")["Service"]
    assert service["Restart"] == ["on-failure"] and service["KillSignal"] == ["SIGTERM"]
    assert float(service["TimeoutStopSec"][0]) > STOP_GRACE_SECONDS + 10, "the stop must outlast the drain, or systemd kills the calls"
    assert service["StandardOutput"] == service["StandardError"] == ["journal"]
    assert service["DynamicUser"] == ["yes"] and service["StateDirectory"] == [unit]
    assert f"MCPFED_HOME=%S/{unit}" in service["Environment"], "the state lives in the StateDirectory"
    assert service["EnvironmentFile"] == [f"/etc/mcpfed/{unit.removeprefix('mcpfed-')}.env"]
    assert service["ExecStart"] == [f"{INSTALLED} {command}"]


@pytest.mark.parametrize(("unit", "command"), [("mcpfed-peer", "serve"), ("mcpfed-relay", "relay")])
def test_exec_start_with_the_example_environment_is_accepted_by_the_cli(unit: str, command: str, joined: dict[str, str], tmp_path: Path) -> None:
    """ExecStartPre joins the token, then ExecStart's command with the example EnvironmentFile passes `--check` (binds 0.0.0.0: needs the mesh)."""
    service = _parse(UNITS / f"{unit}.service")["Service"]
    state = tmp_path / "state"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **_env_file(UNITS / f"{unit}.env"), **joined, "MCPFED_HOME": str(state)}
    (pre,) = service["ExecStartPre"]
    shell = re.fullmatch(r"/bin/sh -c '(.+)'", pre)
    assert shell is not None
    script = shell.group(1).replace(INSTALLED, f'"{sys.executable}" -m federation.cli')
    done = subprocess.run(["/bin/sh", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=EXIT_BOUND, check=False)
    assert done.returncode == 0 and "joined mesh service" in done.stderr, done.stderr
    args = service["ExecStart"][0].split()[1:]
    assert args == [command]
    checked = subprocess.run([sys.executable, "-m", "federation.cli", *args, "--check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=EXIT_BOUND, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "mesh 'service'" in checked.stderr and "host 0.0.0.0, http)" in checked.stderr


@pytest.mark.parametrize(("unit", "command", "prefix"), [("mcpfed-peer", "serve", "MCPFED_"), ("mcpfed-relay", "relay", "MCPFED_RELAY_")])
def test_the_example_says_plain_http_knowingly_and_a_certificate_replaces_it(unit: str, command: str, prefix: str, joined: dict[str, str], tmp_path: Path) -> None:
    """Binding 0.0.0.0 needs TLS or --plain-http: the example says the latter; without it the unit is refused, with a certificate it serves HTTPS."""
    pytest.importorskip("trustme")
    example = _env_file(UNITS / f"{unit}.env")
    assert example.pop(f"{prefix}PLAIN_HTTP") == "true"
    state = tmp_path / "state"
    assert mcpfed_sync("join", joined["MCPFED_JOIN_TOKEN"], "--home", str(state)).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **example, "MCPFED_HOME": str(state)}
    refused = mcpfed_sync(command, "--check", env=env)
    assert refused.returncode == 2 and "would serve plain HTTP to the network" in refused.stderr, refused.stderr
    pki = make_pki(tmp_path)
    served = mcpfed_sync(command, "--check", env={**env, f"{prefix}TLS_CERT": str(pki["cert"]), f"{prefix}TLS_KEY": str(pki["key"])})
    assert served.returncode == 0 and "host 0.0.0.0, https)" in served.stderr, served.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here; the parser checks above still ran")
@pytest.mark.parametrize("unit", ["mcpfed-peer", "mcpfed-relay"])
def test_systemd_analyze_verify_finds_nothing_to_say(unit: str, tmp_path: Path) -> None:
    """systemd's own checker, on a copy whose ExecStart points at an executable that exists here."""
    stand_in = tmp_path / "mcpfed"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    copy = tmp_path / f"{unit}.service"
    copy.write_text((UNITS / f"{unit}.service").read_text().replace(INSTALLED, str(stand_in)))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=EXIT_BOUND, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
