"""Screens pushed over the main view: a peer's detail, the help."""
