"""Fixtures for the federation tests that run `mcpfed` as a user would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A wide terminal (help and tables unwrapped) and a state directory of the test's own."""
    return os.environ | {"MCPFED_HOME": str(tmp_path / "home"), "COLUMNS": "200", "NO_COLOR": "1"}
