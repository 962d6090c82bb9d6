-- wrk script for bench/run.sh's POST phase: every request is a keep-alive POST of
-- POST_BYTES bytes (an environment variable; 1024 if unset) of "x", with a Content-Length
-- (wrk adds it for a body) and a Content-Type.
local bytes = tonumber(os.getenv("POST_BYTES") or "1024")
wrk.method = "POST"
wrk.body = string.rep("x", bytes)
wrk.headers["Content-Type"] = "application/octet-stream"
