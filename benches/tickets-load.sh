#!/usr/bin/env bash
# Bookings/s of the ticket system, monolith vs decomposed, on one hot show and spread over
# 100 shows: wrk (2 threads, C connections, S seconds) POSTs 1-seat bookings under fresh
# names; afterwards every show's `reserved` must equal its reservations (checked, printed).
# Usage: benches/tickets-load.sh [SECONDS] [CONNECTIONS] [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-5}
C=${2:-32}
W=${3:-2}
BIN=target/release/shardkv
ROOT=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; rm -rf "$ROOT"' EXIT

serve() { # serve DATA PORT ARGS...
  "$BIN" serve --data "$ROOT/$1" --port "$2" "${@:3}" > "$ROOT/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$2/healthz" > /dev/null && return; sleep 0.1; done
  echo "$1 did not start"; cat "$ROOT/$1.log"; exit 1
}
shows() { # shows BASE_URL PREFIX N FILE: N shows of 1,000,000 seats, ids into FILE
  : > "$4"
  for i in $(seq "$3"); do
    curl -sf -H 'content-type: application/json' -d "{\"name\":\"show-$i\",\"houseSize\":1000000}" \
      "$1$2/shows" | jq -r ._id >> "$4"
  done
}
check() { # check SHOW_URL RESERVATIONS_URL FILE: reserved == reservations, per show
  local total=0 bad=0
  while read -r id; do
    r=$(curl -sf "$1/$id" | jq .reserved)
    g=$(curl -sf "$2/$id" | jq '[.[].guests] | add // 0')
    total=$((total + r))
    [ "$r" = "$g" ] || bad=$((bad + 1))
  done < "$3"
  echo "check: seats reserved $total; shows whose reserved != sum of guests: $bad"
}
run() { # run LABEL URL PATH FILE SHOW_URL RESERVATIONS_URL
  echo "== $1"
  wrk -t2 -c"$C" -d"${S}s" -s benches/tickets-book.lua "$2" -- "$3" "$4" | grep -E "Requests/sec|requests in|Non-2xx|Socket errors|Latency"
  sleep 1 # bookings in flight when wrk stopped finish first
  check "$5" "$6" "$4"
}

serve all 13100 --workers "$W"
serve shows 13101 --service shows --workers "$W"
serve reservations 13102 --service reservations --workers "$W"
serve api 13103 --service api --workers "$W" --shows-url http://127.0.0.1:13101 \
  --reservations-url http://127.0.0.1:13102

M=http://127.0.0.1:13100
shows $M /tickets 1 "$ROOT/m-hot"; shows $M /tickets 100 "$ROOT/m-spread"
shows http://127.0.0.1:13101 "" 1 "$ROOT/d-hot"; shows http://127.0.0.1:13101 "" 100 "$ROOT/d-spread"

run "monolith ($W workers), one hot show" $M /tickets/reserveTickets "$ROOT/m-hot" $M/tickets/show $M/tickets/reservations
run "decomposed (api, shows, reservations: $W workers each), one hot show" http://127.0.0.1:13103 /reserve \
  "$ROOT/d-hot" http://127.0.0.1:13101/show http://127.0.0.1:13102/reservations
run "monolith ($W workers), 100 shows" $M /tickets/reserveTickets "$ROOT/m-spread" $M/tickets/show $M/tickets/reservations
run "decomposed (api, shows, reservations: $W workers each), 100 shows" http://127.0.0.1:13103 /reserve \
  "$ROOT/d-spread" http://127.0.0.1:13101/show http://127.0.0.1:13102/reservations
for d in all shows reservations api; do "$BIN" stop --data "$ROOT/$d" > /dev/null; done
