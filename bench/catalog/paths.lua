-- wrk script for `./estore bench catalog`: GETs the request paths of the
-- file BENCH_PATHS names, one a line, in turn (each wrk thread from its
-- own place in the list, so threads do not ask the same thing in step).
local paths = {}
local next_i = 0

function init(args)
  local name = os.getenv("BENCH_PATHS")
  if name == nil or name == "" then
    error("BENCH_PATHS is not set")
  end
  local f = assert(io.open(name, "r"))
  for line in f:lines() do
    if line ~= "" then
      paths[#paths + 1] = line
    end
  end
  f:close()
  if #paths == 0 then
    error(name .. ": no paths")
  end
  -- "id" is the global setup() gave this thread.
  next_i = (id or 0) % #paths
end

function setup(thread)
  setup_count = (setup_count or 0)
  thread:set("id", setup_count * 7919)
  setup_count = setup_count + 1
end

function request()
  next_i = next_i % #paths + 1
  return wrk.format("GET", paths[next_i])
end
