#!/usr/bin/env bash
# The durable counter against Redis, side by side in one run (issue: "the durable counter at
# Redis speed"). Every row is driven with the same connections for the same time:
#
#   Redis (AOF appendfsync always) INCR     redis-benchmark -c C -P 1 -t incr
#   shardkv serve --workers 1, 2, 4  GET /  wrk -t2 -cC -dD
#   shardkv serve --workers 2  GET /healthz
#   benches/hello_axum.rs (plain axum)  GET /
#
# For shardkv rows it also reports CPU microseconds per request (the workers' utime+stime from
# /proc, divided by requests) and the mean group per commit (from /stats), and checks the
# counter: /count must cover every answered GET / and exceed it by no more than C (requests
# in flight when wrk stopped).
#
# With BEFORE=path/to/an/older/shardkv, the counter rows are repeated for that binary in the
# same run, so before/after ratios come from one machine state.
#
# Usage: [BEFORE=…] benches/throughput.sh [SECONDS] [CONNECTIONS] > benches/results/throughput.md
# Needs wrk and redis-server (apt-get install wrk redis-server). Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-10}
C=${2:-32}
cargo build --release --quiet --bin shardkv --example hello_axum
BIN=target/release/shardkv
HELLO=target/release/examples/hello_axum
PORT=3997
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() {
  for _ in $(seq 200); do curl -sf "$1" > /dev/null && return 0; sleep 0.05; done
  echo "no answer from $1" >&2
  return 1
}

# utime+stime of the given pids, in clock ticks.
cpu_ticks() {
  local total=0
  for p in "$@"; do
    # Fields 14 and 15 of /proc/PID/stat, counted after the command name's closing paren.
    local t
    t=$(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
    total=$((total + t))
  done
  echo "$total"
}

# The workers' pids, once /stats lists all $1 of them.
worker_pids() {
  local pids
  for _ in $(seq 100); do
    pids=$(curl -s "http://127.0.0.1:$PORT/stats" | python3 -c '
import json, sys
print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"]))')
    [ "$(wc -w <<< "$pids")" -ge "$1" ] && { echo "$pids"; return 0; }
    sleep 0.1
  done
  echo "fewer than $1 workers in /stats" >&2
  return 1
}

# Requests each worker has answered so far, in pid order, space-separated.
worker_requests() {
  curl -s "http://127.0.0.1:$PORT/stats" | python3 -c '
import json, sys
ws = sorted(json.load(sys.stdin)["workers"], key=lambda w: w["pid"])
print(" ".join(str(w.get("requests", 0)) for w in ws))'
}

mean_group() {
  curl -s "http://127.0.0.1:$PORT/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
shards = s.get("shards", [])
commits = sum(x.get("commits", 0) for x in shards)
writes = sum(x.get("writes", 0) + x.get("rejected", 0) for x in shards)
print(f"{writes / commits:.1f}" if commits else "-")'
}

# wrk's requests/s and completed requests.
run_wrk() {
  wrk -t2 -c"$C" -d"${D}s" "$1" > "$WORK/wrk.txt"
  cat "$WORK/wrk.txt" >&2
  if grep -q "Non-2xx" "$WORK/wrk.txt"; then
    echo "non-2xx answers from $1" >&2
    return 1
  fi
  awk '/Requests\/sec/ {rps=$2} / requests in / {n=$1} END {print rps, n}' "$WORK/wrk.txt"
}

echo "| system | requests/s | vs Redis | CPU µs/request | mean group | split over workers | counter check |"
echo "|---|--:|--:|--:|--:|--:|---|"

# Redis, AOF fsync on every write.
redis-server --port $PORT --dir "$WORK" --appendonly yes --appendfsync always --save '' \
  --daemonize no > "$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p $PORT ping > /dev/null 2>&1 && break; sleep 0.05; done
N_REDIS=$((D * 60000))
REDIS=$(redis-benchmark -p $PORT -c "$C" -P 1 -n "$N_REDIS" -t incr --csv 2>/dev/null \
  | awk -F'"' '/INCR/ {print $4}')
REDIS_COUNT=$(redis-cli -p $PORT get counter:__rand_int__)
redis-cli -p $PORT shutdown nosave > /dev/null 2>&1 || true
wait "${PIDS[-1]}" 2>/dev/null || true
echo "| Redis $(redis-server --version | awk '{print $3}' | tr -d v=), AOF \`appendfsync always\`, \`INCR\` | ${REDIS%.*} | 1.00x | | | | $REDIS_COUNT increments of $N_REDIS |"

shardkv_row() {
  local bin=$1 workers=$2 path=$3 label=$4
  local data
  data=$(mktemp -d -p "$WORK")
  "$bin" serve --data "$data" --port $PORT --workers "$workers" > "$WORK/serve.log" 2>&1 &
  local server=$!
  PIDS+=($server)
  wait_http "http://127.0.0.1:$PORT/healthz"
  sleep 0.5
  local pids before after got rps n count
  pids=$(worker_pids "$workers")
  # Warm up (connections, page cache), then measure.
  wrk -t2 -c"$C" -d1s "http://127.0.0.1:$PORT$path" > /dev/null
  local base served_before served_after
  base=$(curl -s "http://127.0.0.1:$PORT/count")
  sleep 1.1 # workers publish their request counts every second
  served_before=$(worker_requests)
  before=$(cpu_ticks $pids)
  got=$(run_wrk "http://127.0.0.1:$PORT$path")
  after=$(cpu_ticks $pids)
  sleep 1.1
  served_after=$(worker_requests)
  read -r rps n <<< "$got"
  count=$(curl -s "http://127.0.0.1:$PORT/count")
  local check=""
  if [ "$path" = "/" ]; then
    local extra=$((count - base - n))
    if [ "$extra" -lt 0 ] || [ "$extra" -gt "$C" ]; then
      echo "counter check failed: $count - $base for $n answered requests" >&2
      exit 1
    fi
    check="exact: $n answered, $((count - base)) counted"
  fi
  local cpu_us
  cpu_us=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  local group="-"
  [ "$path" = "/" ] && group=$(mean_group)
  # Which share of the requests each worker answered: the workers accept from one socket,
  # so a burst of connections may all land on one of them.
  local split
  split=$(python3 -c '
import sys
b, a = [list(map(int, x.split())) for x in sys.argv[1:3]]
d = [y - x for x, y in zip(b, a)]
t = sum(d) or 1
print(" / ".join(f"{100 * x / t:.0f}%" for x in d))' "$served_before" "$served_after")
  echo "| $label | ${rps%.*} | $(awk -v a="$rps" -v b="$REDIS" 'BEGIN {printf "%.2fx", a / b}') | $cpu_us | $group | $split | $check |"
  kill -TERM "$server"
  wait "$server" 2>/dev/null || true
}

if [ -n "${BEFORE:-}" ]; then
  for w in 1 2; do
    shardkv_row "$BEFORE" $w / "before: \`shardkv serve --workers $w\`, \`GET /\`"
  done
fi
for w in 1 2 4; do
  shardkv_row "$BIN" $w / "\`shardkv serve --workers $w\`, \`GET /\`"
done
shardkv_row "$BIN" 2 /healthz "\`shardkv serve --workers 2\`, \`GET /healthz\`"

"$HELLO" "127.0.0.1:$PORT" > /dev/null 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PORT/"
wrk -t2 -c"$C" -d1s "http://127.0.0.1:$PORT/" > /dev/null
got=$(run_wrk "http://127.0.0.1:$PORT/")
read -r rps n <<< "$got"
echo "| plain axum 0.8 hello-world (\`benches/hello_axum.rs\`), one process | ${rps%.*} | $(awk -v a="$rps" -v b="$REDIS" 'BEGIN {printf "%.2fx", a / b}') | | | | |"
echo
echo "$(nproc) CPUs; wrk -t2 -c$C -d${D}s; redis-benchmark -c $C -P 1 -n $N_REDIS -t incr; $(date -u +%Y-%m-%d)"
