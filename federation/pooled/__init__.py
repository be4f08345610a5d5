"""Pooled compute: a model bigger than one peer, split over lenders with llama.cpp's RPC backend.

- `tunnel`: the only way a host reaches a lender's RPC server (a mesh-authenticated WebSocket, piped to loopback).
- `lending`: what `serve --lend` runs: the RPC server and the card's offer.
- `planner`: which lender gets how many layers (pure, tested without nodes).
"""
