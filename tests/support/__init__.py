"""Plain helpers shared by the test tree, one module per kind; fixtures stay in the conftest.py files.

cli (`mcpfed …` as a child), discovery (peers in child processes, /events), mesh (introducing nodes),
models (the test model, refusable model files), paths, processes (`mcpfed serve` children), relay,
tmux (a real terminal), tui (the app on a URL), waiting (`wait_until`).
"""
