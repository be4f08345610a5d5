#!/bin/sh
# The image's entrypoint: put this container in a mesh, then run `mcpfed <command>`.
#
# - MCPFED_JOIN_TOKEN set (a token from `mcpfed invite`): join that mesh. It runs
#   on every start; rejoining the same mesh only merges its relays, and a token
#   of another mesh stops the container with the error `mcpfed join` gives.
# - No token and no mesh in the state volume yet: make a new mesh, so a plain
#   `docker run` serves instead of exiting, and print a join token for it on
#   stderr (it holds the mesh secret: the container's log is then as private as
#   that secret must be).
# - Otherwise: the mesh already in the state volume.
set -eu

state="${MCPFED_HOME:-/state}"
if [ -n "${MCPFED_JOIN_TOKEN:-}" ]; then
    mcpfed join "$MCPFED_JOIN_TOKEN"
elif [ ! -f "$state/mesh.json" ]; then
    mcpfed init --mesh "${MCPFED_NEW_MESH:-docker}"
    echo "join other machines to this new mesh with: mcpfed join $(mcpfed invite 2>/dev/null)" >&2
fi
exec mcpfed "$@"
