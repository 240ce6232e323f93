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
# shellcheck source=benches/lib.sh
source benches/lib.sh

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
REDIS_PID=${PIDS[-1]}
wait "$REDIS_PID" 2>/dev/null || true
forget_pid "$REDIS_PID"
echo "| Redis $(redis-server --version | awk '{print $3}' | tr -d v=), AOF \`appendfsync always\`, \`INCR\` | ${REDIS%.*} | 1.00x | | | | $REDIS_COUNT increments of $N_REDIS |"

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
