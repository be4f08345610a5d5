"""Plain HTTP stays the default only on loopback: a network address needs TLS, or `--plain-http` said knowingly.

The CLI is run as a user runs it (a child process, `--check` and a real start),
in a machine that has joined a mesh, so the mesh-secret rule is met and only
the TLS rule is in play. Nothing binds outside loopback: a refused start
stops before its socket opens, and `--check` binds nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from federation.errors import ConfigError
from federation.membership import create_mesh
from federation.node import Node
from federation.relay.server import Relay
from federation.relay.settings import RelaySettings
from federation.settings import PeerSettings
from tests.support.cli import assert_one_line_error, mcpfed_sync
from tests.support.pki import make_pki

COMMANDS = ["serve", "relay"]
ENV_FLAG = {"serve": "MCPFED_PLAIN_HTTP", "relay": "MCPFED_RELAY_PLAIN_HTTP"}
NETWORK = ("--host", "0.0.0.0", "--port", "0")
SAYS = "binding 0.0.0.0 would serve plain HTTP to the network: pass --tls-cert/--tls-key, or --plain-http"


@pytest.fixture
def joined(tmp_path: Path) -> Path:
    """A state dir that holds a mesh, so binding the network passes the mesh-secret rule."""
    home = tmp_path / "home"
    create_mesh(home, "tls")
    return home


def _run(command: str, home: Path, *args: str) -> list[str]:
    """The command line binding 0.0.0.0 (a serve without a model or mDNS, so a start that is allowed is quick)."""
    extra = ("--model", "none", "--mdns", "off") if command == "serve" else ()
    return [command, *NETWORK, "--home", str(home), *extra, *args]


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without MCPFED_* variables (a developer's own must not decide the test), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MCPFED_")}, **extra}


@pytest.mark.parametrize("command", COMMANDS)
def test_binding_the_network_without_tls_is_refused_saying_what_to_do(command: str, joined: Path) -> None:
    checked = mcpfed_sync(*_run(command, joined, "--check"), env=_clean_env())
    assert_one_line_error(checked, 2, SAYS)
    started = mcpfed_sync(*_run(command, joined), env=_clean_env())
    assert started.returncode == 2 and started.stderr.strip().splitlines() == checked.stderr.strip().splitlines(), "refused before anything starts"


@pytest.mark.parametrize("command", COMMANDS)
def test_plain_http_said_knowingly_by_flag_or_variable_is_accepted(command: str, joined: Path) -> None:
    for done in (
        mcpfed_sync(*_run(command, joined, "--plain-http", "--check"), env=_clean_env()),
        mcpfed_sync(*_run(command, joined, "--check"), env=_clean_env(**{ENV_FLAG[command]: "true"})),
    ):
        assert done.returncode == 0, done.stderr
        assert "host 0.0.0.0, http)" in done.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_certificate_is_accepted_and_serves_https(command: str, joined: Path, tmp_path: Path) -> None:
    pytest.importorskip("trustme")
    pki = make_pki(tmp_path)
    done = mcpfed_sync(*_run(command, joined, "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]), "--check"), env=_clean_env())
    assert done.returncode == 0, done.stderr
    assert "host 0.0.0.0, https)" in done.stderr


def test_the_help_says_the_rule() -> None:
    for command in COMMANDS:
        shown = mcpfed_sync(command, "--help", env=_clean_env(COLUMNS="200"))
        assert "--plain-http" in shown.stdout and "TLS-terminating proxy" in shown.stdout


def test_the_library_applies_the_same_rule_and_loopback_stays_plain(joined: Path) -> None:
    """Code that builds a Node or Relay meets the rule too; loopback needs neither TLS nor the flag."""
    with pytest.raises(ConfigError, match="would serve plain HTTP"):
        Node(PeerSettings(host="10.0.0.1", port=0, model=None, home=joined))
    with pytest.raises(ConfigError, match="would serve plain HTTP"):
        Relay(RelaySettings(host="::", port=0, home=joined))
    assert PeerSettings(host="10.0.0.1", home=joined, plain_http=True).bind_problem() is None
    assert RelaySettings(host="127.0.0.1", home=joined).bind_problem() is None
    assert PeerSettings(host="::1", home=joined).bind_problem() is None
