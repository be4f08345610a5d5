"""compose/ read as Docker would, its commands run by the real CLI: no container engine runs here.

What is checked: compose.yaml parses; every mcpfed service's command, run
through the image's entrypoint script with the variables compose would give it
and `--check` added, is accepted by `mcpfed` (the secret flow: the join token
puts each container in the mesh, and --plain-http is said inside Docker's
network, so binding 0.0.0.0 is allowed); volumes,
published ports, public URLs, healthchecks, `depends_on` conditions and
restart policies agree with those commands; the healthcheck command passes
against a real relay that has a mesh secret; the Dockerfile installs what the
Makefile installs. What is not: building the image, pulling postgres:16,
Docker networking, a GPU (compose/README.md says so too).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from federation.membership import parse_token
from tests.support.cli import EXIT_BOUND, mcpfed_sync
from tests.support.paths import REPO

yaml = pytest.importorskip("yaml")

COMPOSE_DIR = REPO / "compose"
PUBLIC_HOST = "mesh.example.test"
STATE = "/state"
"""MCPFED_HOME in the image (Dockerfile ENV): where each container keeps its key and mesh."""

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$`, over every string of the file."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        given = env.get(name, "")
        if op in (":-", "-"):
            return given or arg
        if op in (":?", "?") and not given:
            raise AssertionError(f"compose would refuse to start: {name} is unset ({arg})")
        return given

    return _VARIABLE.sub(substitute, value)


@pytest.fixture(scope="module")
def join_token(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real token, made as compose/README.md says: `mcpfed init`, then `mcpfed invite` naming the relay's public URL."""
    admin = tmp_path_factory.mktemp("admin")
    for args in (("init", "--mesh", "compose"), ("invite", "--relay", f"http://{PUBLIC_HOST}:8900")):
        done = mcpfed_sync(*args, "--home", str(admin))
        assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def compose(join_token: str) -> dict[str, Any]:
    raw = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    return dict(_interpolate(raw, {"MCPFED_PUBLIC_HOST": PUBLIC_HOST, "MCPFED_JOIN_TOKEN": join_token}))


def _mcpfed_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items() if "build" in service}


def _flag(command: list[str], flag: str, default: str | None = None) -> str | None:
    """The value of `--flag=value` (or `--flag value`) in a command."""
    for index, word in enumerate(command):
        if word.startswith(f"--{flag}="):
            return word.split("=", 1)[1]
        if word == f"--{flag}" and index + 1 < len(command):
            return command[index + 1]
    return default


def _listen_port(service: dict[str, Any]) -> int:
    command = service["command"]
    return int(_flag(command, "port", "8900" if command[0] == "relay" else "8801") or 0)


def _bind_mounts(service: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            yield (COMPOSE_DIR / source).resolve(), target


def _mounted_here(service: dict[str, Any]) -> list[str]:
    """The service's command with its mounted folders' paths where the test can read them."""
    command = list(service["command"])
    for host_path, container_path in _bind_mounts(service):
        command = [word.replace(f"={container_path}", f"={host_path}") if container_path != STATE else word for word in command]
    return command


@pytest.fixture
def mcpfed_on_path(tmp_path: Path) -> Path:
    """A folder holding an `mcpfed` that runs this checkout's CLI, as the image's does."""
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "mcpfed"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m federation.cli "$@"\n')
    wrapper.chmod(0o755)
    return folder


def _run_container(command: list[str], environment: dict[str, str], state: Path, bin_folder: Path) -> subprocess.CompletedProcess[str]:
    """The image's ENTRYPOINT (compose/entrypoint.sh) with `command`, as `docker run` would start it, with `state` as /state."""
    env = {"PATH": f"{bin_folder}:/usr/bin:/bin", "MCPFED_HOME": str(state), "PYTHONPATH": str(REPO), **environment}
    return subprocess.run(
        ["sh", str(COMPOSE_DIR / "entrypoint.sh"), *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=EXIT_BOUND, check=False
    )


def test_every_mcpfed_service_starts_its_command_in_the_mesh(compose: dict[str, Any], mcpfed_on_path: Path, tmp_path: Path) -> None:
    """Each command, through the entrypoint with the service's environment and --check, is accepted: joined, allowed to bind 0.0.0.0."""
    services = _mcpfed_services(compose)
    assert {"relay", "alice", "bob", "notes", "gateway", "gpu"} <= set(services)
    for name, service in services.items():
        command = _mounted_here(service)
        done = _run_container([*command, "--check"], service["environment"], tmp_path / name, mcpfed_on_path)
        assert done.returncode == 0, f"{name}: {done.stderr}"
        assert "joined mesh compose" in done.stderr and "settings OK" in done.stderr and "mesh 'compose'" in done.stderr, f"{name}: {done.stderr}"
        rejoined = _run_container([*command, "--check"], service["environment"], tmp_path / name, mcpfed_on_path)
        assert rejoined.returncode == 0, f"{name} after a restart (the token is joined again): {rejoined.stderr}"


def test_without_a_mesh_binding_the_network_is_refused_and_the_entrypoint_makes_one(compose: dict[str, Any], mcpfed_on_path: Path, tmp_path: Path) -> None:
    """--check is real: the relay's command alone, in a state dir with no mesh, is refused; the entrypoint without a token makes a mesh first."""
    relay = compose["services"]["relay"]
    done = _run_container([*relay["command"], "--check"], {"MCPFED_HOME": str(tmp_path / "bare")}, tmp_path / "bare", mcpfed_on_path)
    assert done.returncode == 0, "no token, no mesh yet: the entrypoint makes one (docker run of the bare image)"
    assert "join other machines to this new mesh with: mcpfed join mcpfed" in done.stderr
    direct = mcpfed_sync(*relay["command"], "--check", "--home", str(tmp_path / "none"))
    assert direct.returncode == 2 and "needs a mesh secret" in direct.stderr


def test_services_binding_the_network_say_plain_http_knowingly(compose: dict[str, Any], mcpfed_on_path: Path, tmp_path: Path) -> None:
    """Inside Docker's network every server says --plain-http; the flag is what lets it through (without it, --check refuses)."""
    for name, service in _mcpfed_services(compose).items():
        command = _mounted_here(service)
        if _flag(command, "host") != "0.0.0.0":
            continue
        assert "--plain-http" in command, f"{name} binds 0.0.0.0 without TLS, so it must say --plain-http"
        unsaid = [word for word in command if word != "--plain-http"]
        refused = _run_container([*unsaid, "--check"], service["environment"], tmp_path / name, mcpfed_on_path)
        assert refused.returncode == 2 and "would serve plain HTTP to the network" in refused.stderr, f"{name}: {refused.stderr}"


def test_the_image_default_command_serves_on_the_network_without_any_setup(mcpfed_on_path: Path, tmp_path: Path) -> None:
    """`docker run mcp-federation` (ENTRYPOINT + CMD of the Dockerfile, no token) makes a mesh and passes --check."""
    dockerfile = _dockerfile()
    entrypoint, cmd = _json_instruction(dockerfile, "ENTRYPOINT"), _json_instruction(dockerfile, "CMD")
    assert entrypoint == ["mcpfed-entrypoint"] and f"COPY compose/entrypoint.sh /usr/local/bin/{entrypoint[0]}" in dockerfile
    done = _run_container([*cmd, "--check"], {}, tmp_path / "state", mcpfed_on_path)
    assert done.returncode == 0, done.stderr
    assert "host 0.0.0.0, http)" in done.stderr and "--plain-http" in cmd, "no certificate in the image: plain HTTP, said knowingly"


def test_the_token_sends_joining_machines_to_the_relay_public_url(compose: dict[str, Any], join_token: str) -> None:
    """The relay URL in the token is the relay's --public-url (a name the joining machine resolves), never the service name."""
    relay = compose["services"]["relay"]["command"]
    public = _flag(relay, "public-url")
    assert parse_token(join_token).relays == [public]
    assert urlsplit(public).hostname == PUBLIC_HOST
    assert "relay" in [_flag(relay, "allowed-host")], "members inside the network address it as http://relay:8900"
    assert _flag(relay, "db", "").startswith("postgresql://") and "@postgres/" in _flag(relay, "db", "")


def test_published_ports_match_what_each_service_listens_on_and_advertises(compose: dict[str, Any]) -> None:
    published: list[str] = []
    for name, service in _mcpfed_services(compose).items():
        if not service.get("ports"):
            assert "gateway" in service["command"], f"{name} serves but publishes no port"
            continue
        ((host_port, container_port),) = (port.split(":") for port in service["ports"])
        assert int(container_port) == _listen_port(service), name
        assert _flag(service["command"], "host") == "0.0.0.0", f"{name} must bind every interface of its container"
        public = urlsplit(_flag(service["command"], "public-url"))
        assert (public.hostname, public.port) == (PUBLIC_HOST, int(host_port)), f"{name} advertises a URL other machines reach"
        published.append(host_port)
    assert len(published) == len(set(published)), f"two services publish one host port: {published}"


def test_volumes_keep_each_container_state_and_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
        if name in _mcpfed_services(compose):
            assert any(volume.split(":")[1] == STATE for volume in service["volumes"]), f"{name} keeps its key and mesh in a volume at {STATE}"
    named = [volume.split(":")[0] for service in compose["services"].values() for volume in service.get("volumes", [])]
    assert len([n for n in named if n in declared]) == len({n for n in named if n in declared}), "a state volume is shared by two services"
    assert (REPO / "examples" / "notes").is_dir()


def test_services_restart_wait_for_healthy_dependencies_and_have_the_time_to_drain(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        if "gateway" in service.get("profiles", []):
            assert service["restart"] == "no" and service["stdin_open"], "the gateway is a stdio process per client"
        else:
            assert service["restart"] in ("unless-stopped", "always", "on-failure"), name
            assert "healthcheck" in service, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency], f"{name} waits on {dependency}, which has no healthcheck"
        if name in _mcpfed_services(compose) and name != "gateway":
            assert f":{_listen_port(service)}/health" in " ".join(service["healthcheck"]["test"]), f"{name} probes the port it listens on"
            assert int(service["stop_grace_period"].rstrip("s")) >= 30, f"{name} is killed before it drains"


def test_the_gpu_service_builds_for_cuda_and_reserves_the_gpus(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["gpu"]
    assert set(gpu["build"]["args"]["CMAKE_ARGS"].split()) == {"-DGGML_CUDA=on", "-DGGML_RPC=ON"}, "CUDA, and lending/splitting like every peer"
    assert "cuda" in gpu["build"]["args"]["BASE_IMAGE"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert _flag(gpu["command"], "gpu-layers") == "-1"
    lines = set(_dockerfile().splitlines())
    assert {"ARG BASE_IMAGE=python:3.11-slim", "FROM ${BASE_IMAGE}"} <= lines, "the CUDA base image is a build argument"


@pytest.mark.anyio
async def test_the_healthcheck_passes_against_a_relay_with_a_mesh_secret(compose: dict[str, Any], tmp_path: Path) -> None:
    """The relay's healthcheck command, pointed at a real relay on loopback: /health is open to it, no token needed."""
    import anyio

    from federation.relay.server import Relay
    from federation.relay.settings import RelaySettings
    from tests.support.relay import MESH_FIELDS

    test = compose["services"]["relay"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python3", "-c"]
    async with Relay(RelaySettings(port=0, home=tmp_path / "relay", **MESH_FIELDS)) as relay:
        probe = test[3].replace("127.0.0.1:8900", f"127.0.0.1:{relay.port}")
        done = await anyio.run_process([sys.executable, "-c", probe], check=False)
        refused = await anyio.run_process([sys.executable, "-c", probe.replace("/health", "/peers")], check=False)
    assert done.returncode == 0, done.stderr
    assert refused.returncode != 0, "the probe fails when the answer is an error (here: /peers needs the mesh secret)"


def _dockerfile() -> str:
    return (COMPOSE_DIR / "Dockerfile").read_text()


def _json_instruction(dockerfile: str, name: str) -> list[str]:
    import json

    (line,) = [line for line in dockerfile.splitlines() if line.startswith(f"{name} [")]
    return list(json.loads(line[len(name) + 1 :]))


def test_the_dockerfile_installs_what_the_makefile_installs() -> None:
    """Same llama.cpp build flags, every package the project ships, and extras that exist (the Makefile's dev tools aside)."""
    dockerfile, makefile = _dockerfile(), (REPO / "Makefile").read_text()
    (make_args,) = re.findall(r"^CMAKE_ARGS \?= (.+)$", makefile, re.MULTILINE)
    (docker_args,) = re.findall(r'^ARG CMAKE_ARGS="(.+)"$', dockerfile, re.MULTILINE)
    assert docker_args == make_args.strip()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {match.split()[0] for match in re.findall(r"^COPY (\S+ \S+)$", dockerfile, re.MULTILINE)}
    assert packages <= copied, f"the image misses packages: {packages - copied}"
    assert {"pyproject.toml", "README.md"} <= set(re.findall(r"^COPY ([^\n]+) \./$", dockerfile, re.MULTILINE)[0].split())
    (extras,) = re.findall(r'pip install --no-cache-dir "\.\[([a-z,]+)\]"', dockerfile)
    assert set(extras.split(",")) <= set(project["project"]["optional-dependencies"]) and "postgres" in extras
    assert re.search(r"-m pip install .*-e '\.\[dev\]'", makefile), "the Makefile installs the project itself (the image does too)"
    ignored = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().split()
    assert "**/.venv" in ignored, "the build context must not carry a virtualenv"
