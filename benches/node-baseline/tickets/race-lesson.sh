#!/bin/bash
# race-lesson.sh [RUNS] [--mixed]: the lesson's ticket services under pm2 (shows -i 4,
# reservations -i 2, api -i 5), a fresh show of 10 seats per run, 50 concurrent bookings
# through the api. Ports 13000-13002 (the lesson's 3000-3002 plus 10000, to stay clear of
# other servers on this machine); pm2 state in ./.pm2.
cd "$(dirname "$0")"
export PM2_HOME="$PWD/.pm2"
PM2=./node_modules/.bin/pm2
$PM2 delete all >/dev/null 2>&1
PORT=13001 $PM2 start shows.js -i 4 --name shows >/dev/null
PORT=13002 $PM2 start reservations.js -i 2 --name reservations >/dev/null
PORT=13000 SHOWS_URL=http://127.0.0.1:13001 RESERVATIONS_URL=http://127.0.0.1:13002 \
  $PM2 start api.js -i 5 --name api >/dev/null
$PM2 list
sleep 2
for i in $(seq 1 ${1:-3}); do
  id="show-$i"
  mkdir -p data-shows
  # node-localstorage keeps each key in a file of that name.
  echo "[{\"_id\":\"$id\",\"name\":\"Hamilton\",\"houseSize\":10,\"reserved\":0}]" > data-shows/shows
  mkdir -p data-reservations && echo "{}" > data-reservations/reservations
  node race.js http://127.0.0.1:13000/reserve http://127.0.0.1:13001/show/$id \
    http://127.0.0.1:13002/reservations/$id "$id" 10 50 $2
done
$PM2 delete all >/dev/null
$PM2 kill >/dev/null
