#!/bin/bash
# run.sh RUNS N C [WORKERS] [SEED]: fresh data + fresh cluster per run
cd "$(dirname "$0")"
for i in $(seq 1 ${1:-3}); do
  rm -rf data
  PORT=8089 WORKERS=${4:-4} SEED=${5:-1} node server.js > server.log 2>&1 & PID=$!
  sleep 1.5
  node load.js -n ${2:-2000} -c ${3:-8} -p 8089
  echo "file data/counter = $(cat data/counter)  (includes the driver's +1 read request)"
  kill $PID; wait $PID 2>/dev/null
done
