"""The relay: `mcpfed relay` server, its tunnel protocol and the peer's end of a tunnel."""
