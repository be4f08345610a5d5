"""Snapshots of the main screen on a fixed mesh (no network, fixed clock, UTC).

Regenerate after an intended change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the SVGs under __snapshots__/ before committing them.
"""

from __future__ import annotations

from pathlib import Path

APP = Path(__file__).parent / "snapshot_apps" / "fixed_mesh.py"


def test_main_screen_at_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Narrow: peers on top, topology beside the call log."""
    assert snap_compare(APP, terminal_size=(80, 24))


def test_main_screen_at_160x48(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """Wide: peers beside the topology, calls beside the answer pane."""
    assert snap_compare(APP, terminal_size=(160, 48))


def test_an_answer_streamed_in_at_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """After asking: the answer pane opens under the call log."""
    assert snap_compare(APP, terminal_size=(80, 24), press=["slash", *"what is mDNS?", "enter", "_", "_", "escape"])
