#!/usr/bin/env bash
# Before/after: the same measurements against two commits, interleaved, in one run.
#   bash benchmarks/before_after.sh OLD_REV NEW_REV [ROUNDS]
# For each commit: `healthflow serve` from a git worktree of it (embedded default), wrk posting
# registrations with 32 connections for 10 s, then benchmarks/vitals_probe.py (HTTP batches of
# 1,000 readings, 4 posters, 10 s, waits for the pipeline). Needs wrk (Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?old revision}; NEW=${2:?new revision}; ROUNDS=${3:-3}
PY=$PWD/.venv/bin/python
WORK=$(mktemp -d)
trap 'git worktree remove --force "$WORK/old" 2>/dev/null; git worktree remove --force "$WORK/new" 2>/dev/null; rm -rf "$WORK"' EXIT
git worktree add -q "$WORK/old" "$OLD"
git worktree add -q "$WORK/new" "$NEW"
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"given_name":"Bench","family_name":"Mark","birth_date":"1970-01-01","sex":"unknown","ward":"BENCH"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
LUA
PORT=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
for round in $(seq "$ROUNDS"); do
  for side in old new; do
    data="$WORK/data-$side-$round"
    export HEALTHFLOW_LOG_LEVEL=warning HEALTHFLOW_RATE_LIMIT_SUBJECT_PER_MINUTE=1000000000 \
      HEALTHFLOW_RATE_LIMIT_CLIENT_PER_MINUTE=1000000000
    PYTHONPATH="$WORK/$side/src" $PY -m healthflow serve --port "$PORT" --data-dir "$data" \
      > "$WORK/serve-$side.log" 2>&1 &
    server=$!
    until curl -sf "http://127.0.0.1:$PORT/health" > /dev/null; do sleep 0.2; done
    TOKEN=$(PYTHONPATH="$WORK/$side/src" $PY -m healthflow token --sub bench --role admin --data-dir "$data")
    export TOKEN
    registrations=$(wrk -t1 -c32 -d10s -s "$WORK/post.lua" "http://127.0.0.1:$PORT/api/patients" \
      | awk '/Requests\/sec/ {print $2}')
    vitals=$($PY benchmarks/vitals_probe.py "http://127.0.0.1:$PORT" "$TOKEN" --server-pid "$server")
    echo "round $round $side ($(git -C "$WORK/$side" rev-parse --short HEAD)): registrations/s=$registrations $vitals load=$(cut -d' ' -f1 /proc/loadavg)"
    kill "$server"; wait "$server" 2>/dev/null || true
  done
done
