"""Where a peer keeps its state: key, mesh credentials, database.

`MCPFED_HOME` overrides the platform's per-user data directory, so tests and
several peers on one machine each get their own.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from federation.const import HOME_ENV

__all__ = ["state_dir", "state_path"]


def state_path(override: str | Path | None = None) -> Path:
    """Where the state directory is, without creating it (for readers such as settings)."""
    chosen = override or os.environ.get(HOME_ENV) or platformdirs.user_data_dir("mcpfed", appauthor=False)
    return Path(chosen).expanduser()


def state_dir(override: str | Path | None = None) -> Path:
    """The state directory, created (mode 0700) if missing."""
    path = state_path(override)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
