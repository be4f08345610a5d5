"""Helper processes die with the peer that started them, even when it dies while they are still starting."""

from __future__ import annotations

import subprocess
import sys

from servers.parent_death import child_environment
from tests.support.paths import REPO

_CHILD = "from servers.parent_death import die_with_parent; die_with_parent(); print('running')"


def test_a_child_started_by_its_parent_runs() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], cwd=REPO, env=child_environment(), capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "running")


def test_a_child_whose_parent_died_while_it_started_exits_at_once() -> None:
    """The parent named in its environment is gone (its parent pid is another): it must not run on as an orphan."""
    environment = child_environment() | {"MCPFED_PARENT_PID": "999999999"}
    done = subprocess.run([sys.executable, "-c", _CHILD], cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
