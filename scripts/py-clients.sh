#!/usr/bin/env bash
# Creates (idempotently) a Python venv holding the official MCP and A2A client SDKs,
# used by the integration tests in tests/py/ as real third-party clients.
#
#   PY=$(scripts/py-clients.sh)          # last line of stdout = the venv's python
#   "$PY" tests/py/mcp_client.py --http http://127.0.0.1:PORT/mcp
#
# The venv lives at ${MEMORYD_CACHE:-$HOME/.cache/memoryd}/py-clients. A stamp file
# records the pins; a rerun with the same pins only checks the imports (fast).
# Everything but the final python path goes to stderr.
set -euo pipefail

# Pinned versions (latest that install on Python 3.11 when pinned).
MCP_VERSION="2.3.0"
A2A_SDK_VERSION="1.3.0"
# The a2a-sdk client itself needs only its base deps (httpx, protobuf, pydantic).
# The http-server extra (starlette + sse-starlette, already pulled in by mcp) adds
# the SDK's reference A2A server, handy for diffing wire JSON against memoryd's.
A2A_SDK_EXTRAS="http-server"
PINS=("mcp==${MCP_VERSION}" "a2a-sdk[${A2A_SDK_EXTRAS}]==${A2A_SDK_VERSION}")

CACHE="${MEMORYD_CACHE:-$HOME/.cache/memoryd}"
VENV="$CACHE/py-clients"
STAMP="$VENV/.memoryd-pins"
PY="$VENV/bin/python"
WANT="$(printf '%s\n' "${PINS[@]}")"

log() { echo "py-clients: $*" >&2; }

check_imports() {
    "$PY" -c 'import mcp, mcp.client.stdio, mcp.client.streamable_http, a2a, a2a.client' >&2
}

if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && check_imports 2>/dev/null; then
    log "up to date ($VENV)"
    echo "$PY"
    exit 0
fi

command -v python3 >/dev/null || { log "python3 not found"; exit 1; }
mkdir -p "$CACHE"
if [[ ! -x "$PY" ]]; then
    log "creating venv at $VENV"
    if ! python3 -m venv "$VENV" >&2; then
        log "python3 -m venv failed (on Debian: apt-get install python3-venv)"
        exit 1
    fi
fi
rm -f "$STAMP"
log "installing ${PINS[*]}"
"$PY" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
check_imports
printf '%s\n' "${PINS[@]}" >"$STAMP"
log "ready: $("$PY" -c 'import importlib.metadata as m; print("mcp", m.version("mcp"), "a2a-sdk", m.version("a2a-sdk"))')"
echo "$PY"
