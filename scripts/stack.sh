#!/usr/bin/env bash
# Start the local msvqa stack, every service on 127.0.0.1 (stop it with scripts/stack_down.sh):
#   Prefect server + UI   http://127.0.0.1:${PREFECT_PORT:-4200}      (PREFECT_HOME=data/demo/prefect)
#   MLflow server + UI    http://127.0.0.1:${MLFLOW_PORT:-5000}       (sqlite:///data/demo/mlflow.db, data/demo/mlartifacts)
# One project, one set of stores: the same Prefect database and MLflow store as `make demo` and the CLI
# (DATA overrides the folder), so demo runs show up in both UIs, live while the stack is up.
#   Dask scheduler        tcp://127.0.0.1:${DASK_PORT:-8786}, dashboard :${DASK_DASHBOARD_PORT:-8787} (needs bokeh)
#   two Dask workers      one process each, on random 127.0.0.1 ports
#   msvqa serve           every deployment, runs on the Dask cluster, tracked in the MLflow server
# Usage: scripts/stack.sh [CONFIG] [msvqa serve options, e.g. --cron "0 3 * * *" --set train.qa.epochs=5]
# pids: data/stack/pids/<service>.pid (each a process-group leader), logs: data/stack/logs/<service>.log
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/.venv/bin}
CONFIG=${1:-configs/demo.yaml}
shift || true
STACK=$ROOT/data/stack  # the stack's own pids and logs
DATA=${DATA:-$ROOT/data/demo}  # the stores it serves: configs/demo.yaml's data_dir
PIDS=$STACK/pids
LOGS=$STACK/logs
PREFECT_PORT=${PREFECT_PORT:-4200}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
DASK_PORT=${DASK_PORT:-8786}
DASK_DASHBOARD_PORT=${DASK_DASHBOARD_PORT:-8787}
# `msvqa serve`; overridable so the stack can run a serve command under test.
SERVE_CMD=${SERVE_CMD:-"$BIN/msvqa serve"}

export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true
export PREFECT_HOME=$DATA/prefect
export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api
export PREFECT_SERVER_LOGGING_LEVEL=WARNING DASK_LOGGING__DISTRIBUTED=warning
mkdir -p "$PIDS" "$LOGS" "$PREFECT_HOME" "$DATA/mlartifacts"

for file in "$PIDS"/*.pid; do
  [ -e "$file" ] || continue
  if kill -0 "$(cat "$file")" 2>/dev/null; then
    echo "stack already running ($file); stop it with scripts/stack_down.sh" >&2
    exit 1
  fi
  rm -f "$file"  # left by a stack that died without stack_down
done

# A busy port would make the health checks below succeed against someone else's server. SO_REUSEADDR,
# as the servers set it: a port in TIME_WAIT from a stack just stopped is free for them.
for port in "$PREFECT_PORT" "$MLFLOW_PORT" "$DASK_PORT" "$DASK_DASHBOARD_PORT"; do
  if ! "$BIN/python" -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use (set PREFECT_PORT / MLFLOW_PORT / DASK_PORT / DASK_DASHBOARD_PORT)" >&2
    exit 1
  fi
done

start() {  # start NAME COMMAND...: its own session, so stack_down can end it with all its children
  local name=$1
  shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$PIDS/$name.pid"
}

fail() {
  echo "$1; log tail of $2:" >&2
  tail -n 30 "$LOGS/$2.log" >&2 || true
  scripts/stack_down.sh >&2
  exit 1
}

wait_for() {  # wait_for NAME URL_OR_HOST:PORT SECONDS
  local name=$1 target=$2 deadline=$((SECONDS + $3))
  until "$BIN/python" - "$target" <<'PY' 2>/dev/null
import socket, sys, urllib.request
target = sys.argv[1]
if target.startswith("http"):
    urllib.request.urlopen(target, timeout=2)
else:
    host, port = target.rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=2).close()
PY
  do
    kill -0 "$(cat "$PIDS/$name.pid")" 2>/dev/null || fail "$name exited" "$name"
    [ $SECONDS -lt "$deadline" ] || fail "$name not up after $3 s" "$name"
    sleep 1
  done
}

start prefect-server "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
start mlflow "$BIN/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
  --backend-store-uri "sqlite:///$DATA/mlflow.db" --artifacts-destination "$DATA/mlartifacts"
start dask-scheduler "$BIN/dask" scheduler --host 127.0.0.1 --port "$DASK_PORT" \
  --dashboard-address "127.0.0.1:$DASK_DASHBOARD_PORT"
wait_for dask-scheduler "127.0.0.1:$DASK_PORT" 60
for n in 1 2; do
  start "dask-worker-$n" "$BIN/dask" worker "tcp://127.0.0.1:$DASK_PORT" --nworkers 1 --nthreads 1 \
    --host 127.0.0.1 --no-dashboard --name "worker-$n"
done
wait_for prefect-server "$PREFECT_API_URL/health" 120
wait_for mlflow "http://127.0.0.1:$MLFLOW_PORT/health" 120
# The CLI (flows/runtime.running_stack_api) reports its runs to this server while it answers.
echo "$PREFECT_API_URL" >"$PREFECT_HOME/stack-api-url"
# shellcheck disable=SC2086  # SERVE_CMD is a command line on purpose
start serve $SERVE_CMD "$CONFIG" --set runner.kind=dask --set "runner.address=tcp://127.0.0.1:$DASK_PORT" \
  --set "tracking.uri=http://127.0.0.1:$MLFLOW_PORT" --set "tracking.artifact_location=$DATA/mlartifacts" "$@"
# The printed MLflow link opens the config's experiment (created when new) in the comparison view: its runs
# with their accuracies as columns, best first, in the model-training UI (`msvqa runs link`). It skips
# MLflow's home page, which shows a "collects usage data" notice whatever the server's telemetry setting.
MLFLOW_LINK=$("$BIN/msvqa" runs link "$CONFIG" --set "tracking.uri=http://127.0.0.1:$MLFLOW_PORT" \
  --set "tracking.artifact_location=$DATA/mlartifacts" 2>/dev/null) \
  || MLFLOW_LINK="http://127.0.0.1:$MLFLOW_PORT/#/experiments?workflowType=machine_learning"
sleep 3
kill -0 "$(cat "$PIDS/serve.pid")" 2>/dev/null || fail "serve exited" serve

cat <<EOF
msvqa stack up (logs: data/stack/logs, stop: scripts/stack_down.sh)
  Prefect UI      http://127.0.0.1:$PREFECT_PORT   (export PREFECT_API_URL=$PREFECT_API_URL)
  MLflow UI       $MLFLOW_LINK
  Dask scheduler  tcp://127.0.0.1:$DASK_PORT   dashboard http://127.0.0.1:$DASK_DASHBOARD_PORT/status
  Deployments: PREFECT_API_URL=$PREFECT_API_URL $BIN/prefect deployment run pipeline/pipeline
EOF
