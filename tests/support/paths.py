"""Where the checkout is, for tests that run `python -m …` children or read the examples."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTES = REPO / "examples" / "notes"
