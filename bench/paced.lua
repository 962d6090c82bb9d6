-- wrk script for bench/run.sh: each connection waits PACE_MS milliseconds (an environment
-- variable; 200 if unset) between a response and its next request, as clients with think
-- time do. The sidecar puts a connection away after 100 ms of silence (`client_timer`), so
-- every request here finds its connection parked and serves it again.
local pace = tonumber(os.getenv("PACE_MS") or "200")

function delay()
  return pace
end
