#!/usr/bin/env bash
# Stop what scripts/stack.sh started: exactly the process groups named in data/stack/pids/*.pid
# (serve first, so no run starts while its servers go; then workers, scheduler, MLflow, Prefect).
set -uo pipefail
cd "$(dirname "$0")/.."
PIDS=$PWD/data/stack/pids

stop() {  # stop NAME: TERM the group its pid leads, KILL it after 20 s
  local file=$PIDS/$1.pid pid
  [ -e "$file" ] || return 0
  pid=$(cat "$file")
  # stack.sh started each service as a session leader: pgid == pid. Anything else is a reused pid.
  if [ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ]; then
    kill -TERM -- "-$pid" 2>/dev/null
    for _ in $(seq 40); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 -- "-$pid" 2>/dev/null; then
      echo "$1 ($pid) ignored TERM: killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null
    fi
    echo "stopped $1 ($pid)"
  fi
  rm -f "$file"
}

for name in serve dask-worker-2 dask-worker-1 dask-scheduler mlflow prefect-server; do
  stop "$name"
done
rm -f "${DATA:-$PWD/data/demo}/prefect/stack-api-url"  # the CLI starts its own Prefect server again
for file in "$PIDS"/*.pid; do  # anything else stack.sh may start in later versions
  [ -e "$file" ] && stop "$(basename "$file" .pid)"
done
exit 0
