"""The Textual TUI behind `mcpfed tui`: watches one peer over HTTP (`/events`, `/peers`, `/mcp`); start at `tui.app`."""
