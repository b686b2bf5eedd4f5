-- wrk script for bench/run.sh: every request is a POST /orders for a random
-- seeded user and a random price, with that user's token; responses are
-- counted by status (and, for 201, by the order's status); done() writes one
-- JSON summary.
--
-- Environment (read in every wrk thread):
--   BENCH_TOKENS     file with the seeded users, `id token` a line (required)
--   BENCH_MIN_PRICE  smallest price in kopecks (default 100)
--   BENCH_MAX_PRICE  largest price in kopecks (default 100000)
--   BENCH_WRK_OUT    where done() writes its JSON (default: stdout)
--   BENCH_DELAY_MS   if set: a random pause (exponential, this mean, in ms)
--                    before each request on each connection, for a paced run

local threads = {}
local thread_count = 0

-- Runs in the main Lua state once per wrk thread.
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

local ids = {}
local headers_of = {} -- per user: its token, and the content type
local min_price = tonumber(os.getenv("BENCH_MIN_PRICE") or "100")
local max_price = tonumber(os.getenv("BENCH_MAX_PRICE") or "100000")

-- Per-thread tallies, read by done() through thread:get().
counts = {}
paid = 0
rejected = 0
pending = 0

function init(args)
  local path = os.getenv("BENCH_TOKENS")
  if not path then
    error("BENCH_TOKENS is not set")
  end
  for line in io.lines(path) do
    local id, token = line:match("^(%d+)%s+(%S+)$")
    if id then
      table.insert(ids, tonumber(id))
      table.insert(headers_of, { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token })
    end
  end
  if #ids == 0 then
    error("no users in " .. path)
  end
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
end

function request()
  local i = math.random(#ids)
  local price = math.random(min_price, max_price)
  local body = '{"user_id":' .. ids[i] .. ',"price":' .. price .. '}'
  return wrk.format("POST", "/orders", headers_of[i], body)
end

function response(status, hdrs, body)
  local key = tostring(status)
  counts[key] = (counts[key] or 0) + 1
  if status == 201 then
    if body and string.find(body, '"status":"paid"', 1, true) then
      paid = paid + 1
    else
      rejected = rejected + 1
    end
  elseif status == 202 then
    pending = pending + 1
  end
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
  -- Exponential gaps: arrivals on a connection look like a Poisson stream.
  function delay()
    return math.floor(-math.log(1 - math.random()) * delay_ms + 0.5)
  end
end

local function json_string(s)
  return '"' .. tostring(s):gsub('[%c"\\]', '') .. '"'
end

function done(summary, latency, requests)
  local all = {}
  local total_paid, total_rejected, total_pending = 0, 0, 0
  for _, t in ipairs(threads) do
    local c = t:get("counts") or {}
    for k, v in pairs(c) do
      all[k] = (all[k] or 0) + v
    end
    total_paid = total_paid + (t:get("paid") or 0)
    total_rejected = total_rejected + (t:get("rejected") or 0)
    total_pending = total_pending + (t:get("pending") or 0)
  end
  local non_2xx = 0
  local ok_2xx = 0
  local parts = {}
  for k, v in pairs(all) do
    local code = tonumber(k)
    if code >= 200 and code < 300 then
      ok_2xx = ok_2xx + v
    else
      non_2xx = non_2xx + v
    end
    table.insert(parts, json_string(k) .. ":" .. v)
  end
  local e = summary.errors
  local us = function(p) return latency:percentile(p) end
  local out = string.format(
    '{"duration_s":%.6f,"requests":%d,"bytes":%d,"status":{%s},"ok_2xx":%d,"non_2xx":%d,'
      .. '"paid":%d,"rejected":%d,"pending":%d,'
      .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
      .. '"latency_ms":{"mean":%.3f,"stdev":%.3f,"p50":%.3f,"p90":%.3f,"p99":%.3f,"p99_9":%.3f,"max":%.3f}}\n',
    summary.duration / 1e6, summary.requests, summary.bytes, table.concat(parts, ","), ok_2xx, non_2xx,
    total_paid, total_rejected, total_pending,
    e.connect, e.read, e.write, e.timeout,
    latency.mean / 1000, latency.stdev / 1000, us(50) / 1000, us(90) / 1000, us(99) / 1000, us(99.9) / 1000,
    latency.max / 1000)
  local path = os.getenv("BENCH_WRK_OUT")
  if path and path ~= "" then
    local f = assert(io.open(path, "w"))
    f:write(out)
    f:close()
  else
    io.write(out)
  end
end
