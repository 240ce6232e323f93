#!/usr/bin/env bash
# The HTTP counter under load: `shardkv serve` with 1, 2 and 4 workers on a fresh store,
# each driven by `shardkv load` (which checks every answer). Usage: benches/http-load.sh [N] [C]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
C=${2:-64}
cargo build --release --quiet
BIN=target/release/shardkv
PORT=3997
for workers in 1 2 4; do
  DATA=$(mktemp -d)
  "$BIN" serve --data "$DATA" --port $PORT --workers $workers > /dev/null 2>&1 &
  SERVER=$!
  trap 'kill $SERVER 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$PORT/healthz > /dev/null && break; sleep 0.1; done
  echo "workers=$workers"
  "$BIN" load http://127.0.0.1:$PORT -n "$N" -c "$C" 2> /dev/null
  "$BIN" stop --data "$DATA" > /dev/null
  wait $SERVER || true
  rm -rf "$DATA"
done
