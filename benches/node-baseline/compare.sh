#!/usr/bin/env bash
# Side by side, same machine, same driver: the lesson's node-localstorage counter under 4
# cluster workers vs `shardkv serve --workers 4`. Usage: benches/node-baseline/compare.sh [N] [C]
set -euo pipefail
cd "$(dirname "$0")"
N=${1:-2000}
C=${2:-8}
ROOT=$(cd ../.. && pwd)
[ -d node_modules ] || npm ci --silent
(cd "$ROOT" && cargo build --release --quiet)

echo "== node-localstorage, 4 cluster workers =="
rm -rf data
PORT=8089 WORKERS=4 node server.js > /dev/null 2>&1 &
NODE=$!
trap 'kill $NODE 2>/dev/null || true' EXIT
sleep 1.5
node load.js -n "$N" -c "$C" -p 8089
kill $NODE; wait $NODE 2>/dev/null || true
rm -rf data

echo "== shardkv serve --workers 4 =="
DATA=$(mktemp -d)
"$ROOT/target/release/shardkv" serve --workers 4 --port 8090 --data "$DATA" > /dev/null 2>&1 &
SKV=$!
trap 'kill $SKV 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8090/healthz > /dev/null && break; sleep 0.1; done
node load.js -n "$N" -c "$C" -p 8090
kill -TERM $SKV; wait $SKV 2>/dev/null || true
