-- The one wrk script of the benchmarks and the load tests (bench/harness.py runs it).
-- WRK_METHOD (default POST), WRK_BODY_FILE (a file holding the body; POST defaults to
-- one /predict instance) and WRK_HEADERS say what every request sends. With WRK_COUNT=1,
-- every response is counted by status and by the model version it names (wrk then reads
-- each body, which costs it CPU).
-- done() prints one line, WRK_RESULT {...}, with the figures as JSON.
wrk.method = os.getenv("WRK_METHOD") or "POST"
local body = nil
local body_file = os.getenv("WRK_BODY_FILE")
if body_file ~= nil then
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
end
if body == nil and wrk.method == "POST" then
  body = '{"instances": [{"f0": "v3", "f1": "v17", "f2": "v0", "f3": "v9", "f4": "v21", "f5": "v4"}]}'
end
if body ~= nil and body ~= "" then
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = body
end
-- WRK_HEADERS: more request headers, one "Name: value" a line (they may replace Content-Type).
for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  versions = {}
end

if os.getenv("WRK_COUNT") == "1" then
  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    local version = body:match('"version":"([^"]*)"')
    if version then
      versions[version] = (versions[version] or 0) + 1
    end
  end
end

local function merge(into, from)
  for key, n in pairs(from) do
    into[tostring(key)] = (into[tostring(key)] or 0) + n
  end
end

local function encode(counts)
  local parts = {}
  for key, n in pairs(counts) do
    table.insert(parts, string.format('"%s": %d', key, n))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local all_statuses, all_versions = {}, {}
  for _, thread in ipairs(threads) do
    merge(all_statuses, thread:get("statuses"))
    merge(all_versions, thread:get("versions"))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "seconds": %.3f, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "non_2xx": %d, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
    '"max_ms": %.3f, "statuses": %s, "versions": %s}\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    encode(all_statuses), encode(all_versions)))
end
