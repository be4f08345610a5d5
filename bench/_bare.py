"""A bare MCP SDK server in its own process, the baseline of the process benchmarks.

    python -m bench._bare NOTES_DIR

Serves `servers.notes` (the tool a notes peer serves) with the SDK's own
Streamable HTTP app under uvicorn's defaults (uvloop where installed, as
`MCPServer.run` would), on an ephemeral loopback port; prints its MCP URL.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import uvicorn

from servers.notes import build_server


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    app = build_server(Path(sys.argv[1])).streamable_http_app()
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
