#!/usr/bin/env bash
# Two shardkv builds on the durable counter, alternating row by row, for changes too small
# to tell apart from this VM's drift in one row each. Every row is a fresh store and
# cluster, warmed up for 1 s, then measured as in throughput.sh (requests/s, CPU µs per
# request, mean group, how requests split over workers, the counter checked exact).
#
# Usage: benches/counter-ab.sh A_BIN B_BIN [WORKERS] [ROUNDS] [SECONDS] [CONNECTIONS]
# Needs wrk (apt-get install wrk). Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?the first shardkv binary}
B=${2:?the second shardkv binary}
WORKERS=${3:-2}
ROUNDS=${4:-5}
D=${5:-5}
C=${6:-32}
PORT=3996
# shellcheck source=benches/lib.sh
source benches/lib.sh

echo "| build, round | requests/s | vs Redis | CPU µs/request | mean group | split over workers | counter check |"
echo "|---|--:|--:|--:|--:|--:|---|"
for round in $(seq "$ROUNDS"); do
  shardkv_row "$A" "$WORKERS" / "A ($A), round $round"
  shardkv_row "$B" "$WORKERS" / "B ($B), round $round"
done
echo
echo "$(nproc) CPUs; $WORKERS workers; wrk -t2 -c$C -d${D}s on GET /; $(date -u +%Y-%m-%d)"
