"""Models from the swarm: holders serve signed chunk manifests and chunks (`serve`); `mcpfed pull` fetches
a model from all of them at once (`mesh`, `download`), checking every chunk against the manifest (`manifest`).

Import the submodules: `serve` is part of every node, `mesh` builds on the node.
"""
