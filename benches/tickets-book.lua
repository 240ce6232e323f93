-- wrk script: POST one booking of 1 seat per request, each under a fresh name, spread
-- round-robin over the show ids in the file given after `--` (one per line).
-- usage: wrk -t2 -c32 -d5s -s benches/tickets-book.lua URL -- PATH SHOWS_FILE
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  path = args[1]
  shows = {}
  for line in io.lines(args[2]) do
    table.insert(shows, line)
  end
  n = 0
end

function request()
  n = n + 1
  local show = shows[(n % #shows) + 1]
  local body = string.format('{"showID":"%s","name":"t%d-%d","count":1}', show, tid, n)
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
end
