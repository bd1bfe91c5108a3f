#!/usr/bin/env bash
# `mlflow server` on PostgreSQL with served artifacts, on 127.0.0.1:$INITSWEEP_MLFLOW_PORT (5001). Starts
# PostgreSQL first (postgres.sh). Clients use tracking.uri=http://127.0.0.1:5001 and need no access to the
# artifact dir ($INITSWEEP_SERVICES_DIR/mlflow-artifacts): artifacts travel over HTTP.
#   scripts/services/mlflow_server.sh start|stop|status     ($MLFLOW_BIN: the mlflow command; default .venv's)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/common.sh"
PORT=${INITSWEEP_MLFLOW_PORT:-5001}
PID=$STATE/mlflow.pid
MLFLOW_BIN=${MLFLOW_BIN:-$HERE/../../.venv/bin/mlflow}
[ -x "$MLFLOW_BIN" ] || MLFLOW_BIN=$(command -v mlflow || true)
alive() { [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; }
healthy() { python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/health', timeout=2)" 2>/dev/null; }

case "${1:-start}" in
start)
  "$HERE/postgres.sh" start >/dev/null
  if ! alive; then
    [ -n "$MLFLOW_BIN" ] || { echo "mlflow_server.sh: no mlflow command; set MLFLOW_BIN or run make setup" >&2; exit 1; }
    mkdir -p "$STATE/mlflow-artifacts"
    # No job runner (MLflow's GenAI jobs, unused here): its seven huey consumers cost about 26 CPU s at start
    # and a quarter of a core while idle.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$MLFLOW_BIN" server --backend-store-uri "$PG_URL_BASE/mlflow" --serve-artifacts \
      --artifacts-destination "$STATE/mlflow-artifacts" --host 127.0.0.1 --port "$PORT" --workers 2 \
      >"$STATE/mlflow.log" 2>&1 < /dev/null &
    echo $! > "$PID"
  fi
  for _ in $(seq 1 240); do
    if healthy; then echo "MLflow server up: http://127.0.0.1:$PORT"; exit 0; fi
    alive || { echo "mlflow_server.sh: the server exited; see $STATE/mlflow.log" >&2; tail -5 "$STATE/mlflow.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "mlflow_server.sh: no answer on port $PORT after 120 s; see $STATE/mlflow.log" >&2; exit 1
  ;;
stop)
  if alive; then kill -- -"$(cat "$PID")" 2>/dev/null || true; fi
  rm -f "$PID"; echo "MLflow server stopped"
  ;;
status) healthy && echo "MLflow server up: http://127.0.0.1:$PORT" || { echo "MLflow server not running"; exit 1; } ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
