#!/usr/bin/env bash
# The 50-client race of benches/node-baseline/tickets/race.js against shardkv: a fresh show
# of 10 seats per run, 50 concurrent bookings with distinct names (1 seat each, or counts
# 1..3 with --mixed), then the show and its reservations read back. Monolith: 4 workers;
# decomposed: shows 4, reservations 2, api 5 workers (the lesson's pm2 -i counts).
# Usage: benches/tickets-race.sh [RUNS] [--mixed]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
BIN=target/release/shardkv
RACE=benches/node-baseline/tickets/race.js
ROOT=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; rm -rf "$ROOT"' EXIT
serve() {
  "$BIN" serve --data "$ROOT/$1" --port "$2" "${@:3}" > "$ROOT/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$2/healthz" > /dev/null && return; sleep 0.1; done
  echo "$1 did not start"; cat "$ROOT/$1.log"; exit 1
}
new_show() {
  curl -sf -H 'content-type: application/json' -d '{"name":"Hamilton","houseSize":10}' "$1/shows" | jq -r ._id
}
serve all 13200 --workers 4
serve shows 13201 --service shows --workers 4
serve reservations 13202 --service reservations --workers 2
serve api 13203 --service api --workers 5 --shows-url http://127.0.0.1:13201 \
  --reservations-url http://127.0.0.1:13202
M=http://127.0.0.1:13200/tickets
echo "monolith"
for _ in $(seq "$RUNS"); do
  id=$(new_show $M)
  node $RACE $M/reserveTickets $M/show/$id $M/reservations/$id "$id" 10 50 ${2:-}
done
echo "decomposed"
for _ in $(seq "$RUNS"); do
  id=$(new_show http://127.0.0.1:13201)
  node $RACE http://127.0.0.1:13203/reserve http://127.0.0.1:13201/show/$id \
    http://127.0.0.1:13202/reservations/$id "$id" 10 50 ${2:-}
done
for d in all shows reservations api; do "$BIN" stop --data "$ROOT/$d" > /dev/null; done
