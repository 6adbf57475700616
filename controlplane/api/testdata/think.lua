-- think.lua: think time between a connection's requests, for wrk.
--
--   RAMPART_WRK_THINK_MS=12.8 wrk -t1 -c64 -d10s --latency -s think.lua URL
--
-- With RAMPART_WRK_THINK_MS set, each connection waits an exponentially
-- distributed time with that mean (in ms) after an answer before its next
-- request, as an independent client would: 64 connections then offer
-- about 64/mean requests per ms, arriving nearly as a Poisson stream while
-- answers are short against the think time. Without it wrk sends back to
-- back (a closed loop at saturation). put.lua loads this file too.
local mean = tonumber(os.getenv("RAMPART_WRK_THINK_MS") or "")
if mean then
  math.randomseed(os.time())
  function delay()
    -- wrk's timers count whole ms.
    return math.floor(-math.log(1 - math.random()) * mean + 0.5)
  end
end
