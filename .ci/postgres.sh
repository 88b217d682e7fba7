#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on localhost for the tests (idempotent, non-root).
#
#   eval "$(.ci/postgres.sh)"    # exports MATLOOP_TEST_POSTGRES_URL, or nothing (tests then skip)
#
# Installs Debian's `postgresql` when run as root and it is missing, then runs initdb/pg_ctl as the
# `postgres` user (root: via runuser) in MATLOOP_PG_DIR on MATLOOP_PG_PORT. A second call reuses a
# running server. Only the `export` line goes to stdout; everything else goes to stderr.
# MATLOOP_PG_NO_INSTALL=1: never install, only start what is there.
set -uo pipefail
PGROOT=${MATLOOP_PG_DIR:-/tmp/matloop-ci-postgres}
PORT=${MATLOOP_PG_PORT:-55432}
DB=matloop_test
ROLE=matloop
log() { echo "[postgres.sh] $*" >&2; }
find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BIN=$(find_bin)
if [ -z "$BIN" ] && [ -z "${MATLOOP_PG_NO_INSTALL:-}" ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  log "installing postgresql (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends postgresql; } >&2 || log "apt-get failed"
  BIN=$(find_bin)
fi
if [ -z "$BIN" ]; then
  log "no PostgreSQL server binaries found; PostgreSQL tests will be skipped"
  exit 0
fi

if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  as_pg() { runuser -u postgres -- "$@"; }
  mkdir -p "$PGROOT" && chown postgres: "$PGROOT"
else
  as_pg() { "$@"; }
  mkdir -p "$PGROOT"
fi
chmod 700 "$PGROOT"

PWFILE="$PGROOT/password"
if [ ! -s "$PGROOT/data/PG_VERSION" ]; then
  log "initdb in $PGROOT/data"
  as_pg rm -rf "$PGROOT/data"
  as_pg sh -c "umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > '$PWFILE'"
  as_pg "$BIN/initdb" -D "$PGROOT/data" -U "$ROLE" --pwfile="$PWFILE" --auth=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >&2 || { log "initdb failed; PostgreSQL tests will be skipped"; exit 0; }
fi
PASSWORD=$(as_pg cat "$PWFILE")

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  log "starting the server on 127.0.0.1:$PORT"
  as_pg "$BIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 \
    -o "-p $PORT -k $PGROOT -c listen_addresses=127.0.0.1 -c max_connections=200" start >&2 \
    || { log "pg_ctl start failed (see $PGROOT/server.log); PostgreSQL tests will be skipped"; exit 0; }
fi

export PGPASSWORD="$PASSWORD"
if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1; then
  "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$ROLE" "$DB" >&2 \
    || { log "createdb failed; PostgreSQL tests will be skipped"; exit 0; }
fi
log "ready: postgresql://$ROLE:***@127.0.0.1:$PORT/$DB"
echo "export MATLOOP_TEST_POSTGRES_URL=postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
