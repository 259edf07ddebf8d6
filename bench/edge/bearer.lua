-- wrk script for `./estore bench edge`: every request carries the access
-- token from the environment (BENCH_TOKEN), not from the command line.
local token = os.getenv("BENCH_TOKEN")
if token == nil or token == "" then
  error("BENCH_TOKEN is not set")
end
wrk.headers["Authorization"] = "Bearer " .. token
