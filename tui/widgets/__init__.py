"""The TUI's widgets, one per module: each takes state through reactives and reports through its own messages."""
