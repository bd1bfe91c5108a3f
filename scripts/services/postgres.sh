#!/usr/bin/env bash
# A throwaway PostgreSQL 15 on 127.0.0.1 for initsweep (Optuna storage, MLflow server backend). As root.
#   scripts/services/postgres.sh start|stop|status     (idempotent; data in $INITSWEEP_SERVICES_DIR/postgres)
# Role initsweep/initsweep (may create databases), databases optuna and mlflow, port $INITSWEEP_PG_PORT (5432).
set -euo pipefail
source "$(dirname "$0")/common.sh"
BIN=/usr/lib/postgresql/15/bin
DATA=$STATE/postgres
as_pg() { runuser -u postgres -- "$@"; }
running() { [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

case "${1:-start}" in
start)
  ensure_packages "$BIN/pg_ctl" postgresql-15
  if ! running; then
    if [ ! -f "$DATA/PG_VERSION" ]; then
      mkdir -p "$DATA" && chown postgres:postgres "$DATA" && chmod 700 "$DATA"
      as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    fi
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -o \
      "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$DATA -c max_connections=200" start >/dev/null
  fi
  psql_() { as_pg psql -h "$DATA" -p "$PG_PORT" -U postgres -qtA "$@"; }
  psql_ -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='initsweep') THEN
            CREATE ROLE initsweep LOGIN CREATEDB PASSWORD 'initsweep'; END IF; END \$\$;"
  for db in optuna mlflow; do
    [ "$(psql_ -c "SELECT 1 FROM pg_database WHERE datname='$db'")" = 1 ] || psql_ -c "CREATE DATABASE $db OWNER initsweep"
  done
  echo "PostgreSQL up: ${PG_URL_BASE}/optuna (and /mlflow)"
  ;;
stop)
  if running; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi
  echo "PostgreSQL stopped"
  ;;
status) running && echo "PostgreSQL running on 127.0.0.1:$PG_PORT" || { echo "PostgreSQL not running"; exit 1; } ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
