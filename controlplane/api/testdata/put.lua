-- put.lua: wrk script for full-replacement PUTs of security groups.
--
--   wrk -t1 -c64 -d10s --latency -s put.lua http://127.0.0.1:PORT -- \
--       TOKEN BODY1.json BODY2.json sec_grp_A[,sec_grp_B,...]
--
-- Requests go round-robin over the group ids, and each group alternates
-- between the two bodies, so every PUT changes what is stored. With one id
-- all connections replace the same group; with as many ids as connections
-- each group is, in the steady state, replaced by one connection at a
-- time (wrk's Lua picks per request, not per connection). Requests are
-- formatted once, in init.
local reqs = {}
local next = 0

function init(args)
  local token = args[1]
  local bodies = {}
  for k = 2, 3 do
    local f = assert(io.open(args[k], "rb"))
    bodies[#bodies + 1] = f:read("*a")
    f:close()
  end
  local ids = {}
  for id in string.gmatch(args[4], "[^,]+") do
    ids[#ids + 1] = id
  end
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
  for b = 1, #bodies do
    for _, id in ipairs(ids) do
      reqs[#reqs + 1] = wrk.format("PUT", "/vpc/security-groups/" .. id, headers, bodies[b])
    end
  end
end

function request()
  next = next % #reqs + 1
  return reqs[next]
end

-- Think time, when RAMPART_WRK_THINK_MS asks for it (think.lua beside this
-- file).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "think.lua")
