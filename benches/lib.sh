# Helpers shared by throughput.sh, counter-ab.sh and profile.sh (sourced, not run). Sourcing makes a
# scratch directory (WORK) and an array of processes (PIDS), both cleaned up on exit; the
# helpers expect PORT, C (connections) and D (seconds) to be set, and REDIS (Redis's
# requests/s) optionally.

TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Drops a process that has been waited for from PIDS, so that cleanup never signals a pid
# the system may have given to another process since.
forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

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
  # After the pause: the warm-up's last writes may still be landing when wrk returns.
  sleep 1.1 # workers publish their request counts every second
  base=$(curl -s "http://127.0.0.1:$PORT/count")
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
  local vs="-"
  [ -n "${REDIS:-}" ] && vs=$(awk -v a="$rps" -v b="$REDIS" 'BEGIN {printf "%.2fx", a / b}')
  echo "| $label | ${rps%.*} | $vs | $cpu_us | $group | $split | $check |"
  kill -TERM "$server"
  wait "$server" 2>/dev/null || true
  forget_pid "$server"
}

