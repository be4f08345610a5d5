"""Helpers shared by the test tree: one place for each kind (processes, waiting, servers)."""
