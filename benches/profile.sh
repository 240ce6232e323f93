#!/usr/bin/env bash
# Where a worker's CPU goes on the durable counter: one worker under wrk on GET /, sampled
# with perf (DWARF call graphs, so that Rust frames unwind), summarized per thread and, for
# the shard's committer thread, per call path that took at least 2% of its samples.
#
# Usage: benches/profile.sh [SECONDS] [CONNECTIONS] > benches/results/profile.txt
# Needs wrk and perf (apt-get install wrk linux-perf), and root or perf_event_paranoid <= 1.
# Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-3}
C=${2:-32}
cargo build --release --quiet --bin shardkv
BIN=target/release/shardkv
PORT=3995
# shellcheck source=benches/lib.sh
source benches/lib.sh

"$BIN" serve --data "$WORK/data" --port $PORT --workers 1 > "$WORK/serve.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PORT/healthz"
curl -sf "http://127.0.0.1:$PORT/" > /dev/null
WORKER=$(worker_pids 1)

wrk -t2 -c"$C" -d"$((S + 3))s" "http://127.0.0.1:$PORT/" > "$WORK/wrk.txt" &
WRK=$!
sleep 1
perf record -q -F 999 --call-graph dwarf,16384 -p "$WORKER" -o "$WORK/perf.data" -- sleep "$S" \
  > /dev/null 2>&1
wait $WRK

echo "# perf record -F 999 --call-graph dwarf -p <worker> for ${S} s, 1 worker, wrk -t2 -c$C on GET /"
echo
grep -E "Requests/sec|requests in" "$WORK/wrk.txt"
echo
echo "## Samples per thread"
perf report -i "$WORK/perf.data" --no-children --sort comm -g none -q 2>/dev/null
echo
echo "## The committer thread: user-space call paths with at least 2% of the worker's samples (children included)"
perf report -i "$WORK/perf.data" --comm "$(perf report -i "$WORK/perf.data" --sort comm -g none -q 2>/dev/null \
  | awk '/commit/ {print $NF; exit}')" --children --sort sym -g none -q --percent-limit 2 2>/dev/null \
  | grep -v '\[k\]' | head -40
echo
# The async threads are tokio-rt-worker with several, the main thread (shardkv) with one.
ASYNC=$(perf report -i "$WORK/perf.data" --no-children --sort comm -g none -q 2>/dev/null \
  | awk 'NF && !/commit/ {print $NF; exit}')
echo "## The async worker threads ($ASYNC): top symbols by own samples"
perf report -i "$WORK/perf.data" --comm "$ASYNC" --no-children --sort dso,sym -g none -q \
  --percent-limit 0.7 2>/dev/null | head -30
