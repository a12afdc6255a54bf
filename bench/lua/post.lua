-- wrk script for spore's FRI bench (bench/fri.ts): POST a JSON body to one URL, and at the end
-- print one machine-readable line with wrk's own latency distribution (microseconds):
--   WRKJSON {"requests":N,"duration_us":D,"p50_us":...,"p99_us":...,"errors":{...}}
-- The body comes from the environment (WRK_BODY), so one script serves every function.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end

-- The first few failed responses per thread go to stderr, so a rare non-2xx is explained
-- in the report instead of only counted.
local shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.stderr:write(string.format("WRKFAIL %d %s\n", status, string.gsub(string.sub(body or "", 1, 300), "\n", " ")))
  end
end
