package ebbredis

// Lua scripts. Each one starts with a comment naming its KEYS and ARGV, then
// gets the shared helpers in luaLib appended (newScript), then its body.
//
// Conventions that keep them cheap and exact:
//   - Times arrive as decimal strings and are stored as they came; scores in
//     µs are cut from the ns strings with string.sub, never computed, because
//     Lua's number-to-string conversion prints large numbers as 1.7e+15.
//   - Per-task work is a handful of calls (typically one HMGET and one HSET);
//     sorted-set updates are collected and sent as one variadic call.
//   - Task keys are built from the queue's key prefix ARGV[1] ("P:{q}:"), which
//     hashes to the same slot as the declared keys.

// luaLib holds helpers shared by the scripts.
const luaLib = `
local function us(ns)
  if #ns <= 3 then return "0" end
  return string.sub(ns, 1, -4)
end

-- Variadic calls in chunks: unpack has a limit of a few thousand values.
local function bulk(cmd, key, args)
  local n = #args
  for i = 1, n, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, n)))
  end
end

local function appenderr(old, e)
  if not old or old == "" then return "[" .. e .. "]" end
  return string.sub(old, 1, -2) .. "," .. e .. "]"
end

-- A task reached Succeeded, Dead or Cancelled: free its unique key (when it
-- is held until the end and still names this task) and wake awaiters.
local function ended(qp, id, u, wt, done)
  if u then
    local uk = qp .. "u:" .. u
    if redis.call("GET", uk) == id then redis.call("DEL", uk) end
  end
  if wt and tonumber(wt) > 0 then redis.call("PUBLISH", done, id) end
end

local function expire(tk, ret)
  local ms = tonumber(ret) or 0
  if ms > 0 then
    redis.call("PEXPIRE", tk, ms)
  else
    redis.call("DEL", tk)
  end
end

-- Moves up to limit due tasks from the scheduled set sk to the ready sets rk.
local function promote(qp, rk, sk, nowus, limit)
  local due = redis.call("ZRANGEBYSCORE", sk, "-inf", nowus, "WITHSCORES", "LIMIT", 0, limit)
  if #due == 0 then return 0 end
  local add = {{}, {}, {}}
  local rem = {}
  local n = 0
  for i = 1, #due, 2 do
    local id = due[i]
    local tk = qp .. "t:" .. id
    local p = tonumber(redis.call("HGET", tk, "p"))
    if p then
      redis.call("HSET", tk, "st", "queued")
      local a = add[p] or add[2]
      a[#a + 1] = due[i + 1]
      a[#a + 1] = id
      n = n + 1
    end
    rem[#rem + 1] = id
  end
  bulk("ZREM", sk, rem)
  for p = 1, 3 do
    if #add[p] > 0 then bulk("ZADD", rk[p], add[p]) end
  end
  return n
end
`

const luaEnqueue = `-- Enqueue: store new tasks of one queue.
-- KEYS[1] -> P:{q}:ready:1
-- KEYS[2] -> P:{q}:ready:2
-- KEYS[3] -> P:{q}:ready:3
-- KEYS[4] -> P:{q}:scheduled
-- KEYS[5] -> P:{q}:stats
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> queue channel P:ch:q:<q>
-- ARGV[3] -> now, ns
-- ARGV[4…] -> 9 per task: id, msg, priority (1-3), RunAt ns,
--             "q" (starts Queued) or "s" (starts Scheduled), max attempts,
--             retention ms, unique key ("": none), unique TTL ms (0: until the
--             task ends)
-- Returns {created, r…}: created is 1 when the queue's stats hash did not
-- exist (the queue is new to this Redis); one r per task: "" when stored,
-- else the id of the existing task (same id, or holder of the unique key).
` + luaLib + `
local qp = ARGV[1]
local out = {0}
local add = {{}, {}, {}}
local sched = {}
local queued = false
for i = 4, #ARGV, 9 do
  local id = ARGV[i]
  local tk = qp .. "t:" .. id
  local r = ""
  local u = ARGV[i + 7]
  local ttl = tonumber(ARGV[i + 8])
  if redis.call("EXISTS", tk) == 1 then
    r = id
  elseif u ~= "" then
    local uk = qp .. "u:" .. u
    local ok
    if ttl > 0 then
      ok = redis.call("SET", uk, id, "NX", "PX", ttl)
    else
      ok = redis.call("SET", uk, id, "NX")
    end
    if not ok then
      local holder = redis.call("GET", uk)
      if holder and redis.call("EXISTS", qp .. "t:" .. holder) == 1 then
        r = holder
      elseif ttl > 0 then
        -- The holder is gone (purged, expired): the lock is stale.
        redis.call("SET", uk, id, "PX", ttl)
      else
        redis.call("SET", uk, id)
      end
    end
  end
  if r == "" then
    local p = tonumber(ARGV[i + 2])
    local run = ARGV[i + 3]
    local st = "scheduled"
    if ARGV[i + 4] == "q" then
      st = "queued"
      local a = add[p]
      a[#a + 1] = us(run)
      a[#a + 1] = id
      queued = true
    else
      sched[#sched + 1] = us(run)
      sched[#sched + 1] = id
    end
    if u ~= "" then
      -- u: released when the task ends; ux (key with a TTL): released only
      -- when the task is cancelled before it ran.
      local uf = "u"
      if ttl > 0 then uf = "ux" end
      redis.call("HSET", tk, "msg", ARGV[i + 1], "st", st, "p", p, "run", run,
        "max", ARGV[i + 5], "ret", ARGV[i + 6], uf, u)
    else
      redis.call("HSET", tk, "msg", ARGV[i + 1], "st", st, "p", p, "run", run,
        "max", ARGV[i + 5], "ret", ARGV[i + 6])
    end
  end
  out[#out + 1] = r
end
for p = 1, 3 do
  if #add[p] > 0 then bulk("ZADD", KEYS[p], add[p]) end
end
if #sched > 0 then bulk("ZADD", KEYS[4], sched) end
out[1] = redis.call("HSETNX", KEYS[5], "since", ARGV[3])
if queued then redis.call("PUBLISH", ARGV[2], "") end
return out
`

const luaFetch = `-- Fetch: promote due tasks, then claim up to a limit of Queued tasks.
-- KEYS[1] -> P:{q}:ready:1
-- KEYS[2] -> P:{q}:ready:2
-- KEYS[3] -> P:{q}:ready:3
-- KEYS[4] -> P:{q}:scheduled
-- KEYS[5] -> P:{q}:leases
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> now, ns
-- ARGV[3] -> how many tasks to claim at most (may be 0)
-- ARGV[4] -> lease token
-- ARGV[5] -> worker id
-- ARGV[6] -> lease expiry, ns
-- ARGV[7] -> how many due tasks to promote at most
-- Returns {next due µs or "", then 5 per claimed task: id, msg, attempt, RunAt ns, errors}.
` + luaLib + `
local qp = ARGV[1]
local now = ARGV[2]
local need = tonumber(ARGV[3])
promote(qp, KEYS, KEYS[4], us(now), tonumber(ARGV[7]))
local out = {""}
local leases = {}
local leaseus = us(ARGV[6])
for p = 1, 3 do
  if need <= 0 then break end
  local ids = redis.call("ZRANGE", KEYS[p], 0, need - 1)
  if #ids > 0 then
    redis.call("ZREMRANGEBYRANK", KEYS[p], 0, #ids - 1)
    for _, id in ipairs(ids) do
      local tk = qp .. "t:" .. id
      local f = redis.call("HMGET", tk, "msg", "a", "run", "err")
      -- A member without a hash is debris (the hash was deleted by hand):
      -- skip it. A hash without msg is claimed and reported as malformed.
      if f[1] or f[3] then
        local a = (tonumber(f[2]) or 0) + 1
        redis.call("HSET", tk, "st", "running", "a", a, "tok", ARGV[4], "w", ARGV[5], "sa", now, "le", ARGV[6])
        leases[#leases + 1] = leaseus
        leases[#leases + 1] = id
        local n = #out
        out[n + 1] = id
        out[n + 2] = f[1]
        out[n + 3] = a
        out[n + 4] = f[3]
        out[n + 5] = f[4]
        need = need - 1
      end
    end
  end
end
if #leases > 0 then bulk("ZADD", KEYS[5], leases) end
local nd = redis.call("ZRANGE", KEYS[4], 0, 0, "WITHSCORES")
if nd[2] then out[1] = nd[2] end
return out
`

const luaComplete = `-- Complete: record outcomes of Running tasks of one queue, fenced by token.
-- KEYS[1] -> P:{q}:ready:1
-- KEYS[2] -> P:{q}:ready:2
-- KEYS[3] -> P:{q}:ready:3
-- KEYS[4] -> P:{q}:scheduled
-- KEYS[5] -> P:{q}:leases
-- KEYS[6] -> P:{q}:dead
-- KEYS[7] -> P:{q}:stats
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> queue channel P:ch:q:<q>
-- ARGV[3] -> done channel P:ch:done
-- ARGV[4…] -> 6 per completion: id, lease token, op, now ns, RetryAt ns or "",
--             data. op: S succeeded (data: result), Q retry now, R retry at
--             RetryAt, D dead, C cancelled (data: error JSON to append, or
--             ""), H hand back (data unused).
-- Returns one integer per completion: 1 applied, 0 lease lost.
` + luaLib + `
local qp = ARGV[1]
local done = ARGV[3]
local res = {}
local freed = {}
local ready = {{}, {}, {}}
local sched = {}
local dead = {}
local ns, nf, nr = 0, 0, 0
for i = 4, #ARGV, 6 do
  local id, op, now, data = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 5]
  local tk = qp .. "t:" .. id
  -- st tok ret u wt p run err a
  local f = redis.call("HMGET", tk, "st", "tok", "ret", "u", "wt", "p", "run", "err", "a")
  if f[1] ~= "running" or f[2] ~= ARGV[i + 1] then
    res[#res + 1] = 0
  else
    res[#res + 1] = 1
    freed[#freed + 1] = id
    if op == "S" then
      redis.call("HSET", tk, "st", "succeeded", "fa", now, "res", data)
      expire(tk, f[3])
      ended(qp, id, f[4], f[5], done)
      ns = ns + 1
    elseif op == "Q" or op == "R" then
      local t = ARGV[i + 4]
      local e = f[8] or ""
      if data ~= "" then e = appenderr(f[8], data) end
      if op == "Q" then
        redis.call("HSET", tk, "st", "queued", "run", t, "err", e)
        local r = ready[tonumber(f[6])] or ready[2]
        r[#r + 1] = us(t)
        r[#r + 1] = id
      else
        redis.call("HSET", tk, "st", "retrying", "run", t, "err", e)
        sched[#sched + 1] = us(t)
        sched[#sched + 1] = id
      end
      nr = nr + 1
    elseif op == "D" then
      local e = f[8] or ""
      if data ~= "" then e = appenderr(f[8], data) end
      redis.call("HSET", tk, "st", "dead", "fa", now, "err", e)
      dead[#dead + 1] = us(now)
      dead[#dead + 1] = id
      ended(qp, id, f[4], f[5], done)
      nf = nf + 1
    elseif op == "C" then
      if data ~= "" then
        redis.call("HSET", tk, "st", "cancelled", "fa", now, "err", appenderr(f[8], data))
      else
        redis.call("HSET", tk, "st", "cancelled", "fa", now)
      end
      expire(tk, f[3])
      ended(qp, id, f[4], f[5], done)
    else -- H
      local a = (tonumber(f[9]) or 1) - 1
      if a < 0 then a = 0 end
      redis.call("HSET", tk, "st", "queued", "a", a)
      local r = ready[tonumber(f[6])] or ready[2]
      r[#r + 1] = us(f[7] or now)
      r[#r + 1] = id
    end
  end
end
if #freed > 0 then bulk("ZREM", KEYS[5], freed) end
local queued = false
for p = 1, 3 do
  if #ready[p] > 0 then
    bulk("ZADD", KEYS[p], ready[p])
    queued = true
  end
end
if #sched > 0 then bulk("ZADD", KEYS[4], sched) end
if #dead > 0 then bulk("ZADD", KEYS[6], dead) end
if ns > 0 then redis.call("HINCRBY", KEYS[7], "succeeded", ns) end
if nf > 0 then redis.call("HINCRBY", KEYS[7], "failed", nf) end
if nr > 0 then redis.call("HINCRBY", KEYS[7], "retried", nr) end
if queued then redis.call("PUBLISH", ARGV[2], "") end
return res
`

const luaExtend = `-- ExtendLeases: move lease expiries of Running tasks the caller still owns.
-- KEYS[1] -> P:{q}:leases
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> new lease expiry, ns
-- ARGV[3…] -> 2 per lease: id, lease token
-- Returns {lost ids, ids whose cancellation was requested}.
` + luaLib + `
local qp = ARGV[1]
local lost, cancel, add = {}, {}, {}
local until_us = us(ARGV[2])
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local tk = qp .. "t:" .. id
  local f = redis.call("HMGET", tk, "st", "tok", "cx")
  if f[1] ~= "running" or f[2] ~= ARGV[i + 1] then
    lost[#lost + 1] = id
  else
    redis.call("HSET", tk, "le", ARGV[2])
    add[#add + 1] = until_us
    add[#add + 1] = id
    if f[3] then cancel[#cancel + 1] = id end
  end
end
if #add > 0 then bulk("ZADD", KEYS[1], add) end
return {lost, cancel}
`

const luaRescue = `-- RescueExpired: requeue (or kill) Running tasks whose lease expired.
-- KEYS[1] -> P:{q}:ready:1
-- KEYS[2] -> P:{q}:ready:2
-- KEYS[3] -> P:{q}:ready:3
-- KEYS[4] -> P:{q}:leases
-- KEYS[5] -> P:{q}:dead
-- KEYS[6] -> P:{q}:stats
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> now, ns
-- ARGV[3] -> how many tasks to rescue at most
-- ARGV[4] -> queue channel P:ch:q:<q>
-- ARGV[5] -> done channel P:ch:done
-- ARGV[6] -> the error message, as a JSON string
-- Returns {requeued ids, dead ids}.
` + luaLib + `
local qp, now = ARGV[1], ARGV[2]
local ids = redis.call("ZRANGEBYSCORE", KEYS[4], "-inf", "(" .. us(now), "LIMIT", 0, tonumber(ARGV[3]))
local requeued, died = {}, {}
local ready = {{}, {}, {}}
local dead = {}
for _, id in ipairs(ids) do
  local tk = qp .. "t:" .. id
  -- st a max p run w err u wt
  local f = redis.call("HMGET", tk, "st", "a", "max", "p", "run", "w", "err", "u", "wt")
  if f[1] == "running" then
    local e = '{"attempt":' .. (f[2] or "0") .. ',"at":' .. now .. ',"error":' .. ARGV[6]
    if f[6] then e = e .. ',"worker_id":' .. cjson.encode(f[6]) end
    e = appenderr(f[7], e .. "}")
    if (tonumber(f[2]) or 0) >= (tonumber(f[3]) or 1) then
      redis.call("HSET", tk, "st", "dead", "fa", now, "err", e)
      redis.call("HDEL", tk, "tok")
      dead[#dead + 1] = us(now)
      dead[#dead + 1] = id
      ended(qp, id, f[8], f[9], ARGV[5])
      died[#died + 1] = id
    else
      redis.call("HSET", tk, "st", "queued", "err", e)
      redis.call("HDEL", tk, "tok")
      local r = ready[tonumber(f[4])] or ready[2]
      r[#r + 1] = us(f[5] or now)
      r[#r + 1] = id
      requeued[#requeued + 1] = id
    end
  end
end
if #ids > 0 then bulk("ZREM", KEYS[4], ids) end
for p = 1, 3 do
  if #ready[p] > 0 then bulk("ZADD", KEYS[p], ready[p]) end
end
if #dead > 0 then bulk("ZADD", KEYS[5], dead) end
if #requeued > 0 then
  redis.call("HINCRBY", KEYS[6], "retried", #requeued)
  redis.call("PUBLISH", ARGV[4], "")
end
if #died > 0 then redis.call("HINCRBY", KEYS[6], "failed", #died) end
return {requeued, died}
`

const luaPromote = `-- PromoteDue: move due Scheduled/Retrying tasks to Queued.
-- KEYS[1] -> P:{q}:ready:1
-- KEYS[2] -> P:{q}:ready:2
-- KEYS[3] -> P:{q}:ready:3
-- KEYS[4] -> P:{q}:scheduled
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> now, ns
-- ARGV[3] -> how many to move at most
-- ARGV[4] -> queue channel P:ch:q:<q>
-- Returns how many moved.
` + luaLib + `
local n = promote(ARGV[1], KEYS, KEYS[4], us(ARGV[2]), tonumber(ARGV[3]))
if n > 0 then redis.call("PUBLISH", ARGV[4], "") end
return n
`

const luaCancel = `-- TaskCancel: cancel a waiting task at once, or flag a running one.
-- KEYS[1] -> P:{q}:t:<id>
-- KEYS[2] -> P:{q}:ready:1
-- KEYS[3] -> P:{q}:ready:2
-- KEYS[4] -> P:{q}:ready:3
-- KEYS[5] -> P:{q}:scheduled
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> task id
-- ARGV[3] -> now, ns
-- ARGV[4] -> control channel P:ch:ctl
-- ARGV[5] -> cancel message (JSON) for the control channel
-- ARGV[6] -> done channel P:ch:done
-- Returns the state after the call, or false when the task does not exist.
` + luaLib + `
local tk = KEYS[1]
local f = redis.call("HMGET", tk, "st", "p", "ret", "u", "wt", "ux")
local st = f[1]
if not st then return false end
if st == "queued" or st == "scheduled" or st == "retrying" then
  if st == "queued" then
    redis.call("ZREM", KEYS[1 + (tonumber(f[2]) or 2)], ARGV[2])
  else
    redis.call("ZREM", KEYS[5], ARGV[2])
  end
  redis.call("HSET", tk, "st", "cancelled", "fa", ARGV[3])
  expire(tk, f[3])
  -- Cancelled before it ran: as if never enqueued, so even a unique key
  -- with a TTL is released.
  ended(ARGV[1], ARGV[2], f[4] or f[6], f[5], ARGV[6])
  return "cancelled"
end
if st == "running" then
  redis.call("HSET", tk, "cx", "1")
  redis.call("PUBLISH", ARGV[4], ARGV[5])
end
return st
`

const luaAwaitMark = `-- TaskAwait, start: count a waiter unless the task already ended.
-- KEYS[1] -> P:{q}:t:<id>
-- Returns the task's state, or false when it does not exist.
` + luaLib + `
local st = redis.call("HGET", KEYS[1], "st")
if not st then return false end
if st ~= "succeeded" and st ~= "dead" and st ~= "cancelled" then
  redis.call("HINCRBY", KEYS[1], "wt", 1)
end
return st
`

const luaAwaitUnmark = `-- TaskAwait, end: uncount a waiter (without recreating an expired task).
-- KEYS[1] -> P:{q}:t:<id>
` + luaLib + `
if redis.call("HEXISTS", KEYS[1], "wt") == 1 then
  if redis.call("HINCRBY", KEYS[1], "wt", -1) <= 0 then
    redis.call("HDEL", KEYS[1], "wt")
  end
end
return 0
`

const luaDeadRetry = `-- DeadRetry: move Dead tasks back to Queued with attempt 0.
-- KEYS[1] -> P:{q}:ready:1
-- KEYS[2] -> P:{q}:ready:2
-- KEYS[3] -> P:{q}:ready:3
-- KEYS[4] -> P:{q}:dead
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> now, ns
-- ARGV[3] -> queue channel P:ch:q:<q>
-- ARGV[4] -> with no ids: how many of the oldest dead tasks to move
-- ARGV[5…] -> ids (none: the oldest dead tasks)
-- Returns how many moved, and how many were looked at.
` + luaLib + `
local qp, now = ARGV[1], ARGV[2]
local ids = {}
if #ARGV >= 5 then
  for i = 5, #ARGV do
    if redis.call("ZSCORE", KEYS[4], ARGV[i]) then ids[#ids + 1] = ARGV[i] end
  end
else
  ids = redis.call("ZRANGE", KEYS[4], 0, tonumber(ARGV[4]) - 1)
end
local ready = {{}, {}, {}}
local nowus = us(now)
local n = 0
for _, id in ipairs(ids) do
  local tk = qp .. "t:" .. id
  local f = redis.call("HMGET", tk, "p", "u")
  local p = tonumber(f[1])
  if p then
    redis.call("HSET", tk, "st", "queued", "a", 0, "run", now)
    redis.call("HDEL", tk, "fa", "tok", "le", "cx")
    -- Hold the unique key again while the task lives, unless another task
    -- took it meanwhile (the user asked for this retry explicitly).
    if f[2] then redis.call("SET", qp .. "u:" .. f[2], id, "NX") end
    local r = ready[p] or ready[2]
    r[#r + 1] = nowus
    r[#r + 1] = id
    n = n + 1
  end
end
if #ids > 0 then bulk("ZREM", KEYS[4], ids) end
for p = 1, 3 do
  if #ready[p] > 0 then bulk("ZADD", KEYS[p], ready[p]) end
end
if n > 0 then redis.call("PUBLISH", ARGV[3], "") end
return {n, #ids}
`

const luaDeadPurge = `-- DeadPurge: delete Dead tasks.
-- KEYS[1] -> P:{q}:dead
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> with no ids: how many of the oldest dead tasks to delete
-- ARGV[3…] -> ids (none: the oldest dead tasks)
-- Returns how many were deleted, and how many were looked at.
` + luaLib + `
local qp = ARGV[1]
local ids = {}
if #ARGV >= 3 then
  for i = 3, #ARGV do
    if redis.call("ZSCORE", KEYS[1], ARGV[i]) then ids[#ids + 1] = ARGV[i] end
  end
else
  ids = redis.call("ZRANGE", KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
local n = 0
for _, id in ipairs(ids) do
  n = n + redis.call("DEL", qp .. "t:" .. id)
end
if #ids > 0 then bulk("ZREM", KEYS[1], ids) end
return {n, #ids}
`

const luaCleanup = `-- Cleanup: delete Dead tasks that died before a cutoff.
-- KEYS[1] -> P:{q}:dead
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> cutoff, µs (exclusive)
-- ARGV[3] -> how many to delete at most
-- Returns how many were deleted.
` + luaLib + `
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", "(" .. ARGV[2], "LIMIT", 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call("DEL", ARGV[1] .. "t:" .. id)
end
if #ids > 0 then bulk("ZREM", KEYS[1], ids) end
return #ids
`

const luaWorkerHeartbeat = `-- WorkerHeartbeat: register or refresh a worker.
-- KEYS[1] -> P:workers:{w}
-- KEYS[2] -> P:worker:{w}:<id>
-- KEYS[3] -> P:drain:{w}:<id>
-- ARGV[1] -> worker id
-- ARGV[2] -> expiry, ms
-- ARGV[3] -> WorkerInfo JSON
-- ARGV[4] -> TTL of the JSON key, ms (garbage collection only)
-- Returns 1 when a drain was requested.
` + luaLib + `
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
redis.call("SET", KEYS[2], ARGV[3], "PX", ARGV[4])
return redis.call("EXISTS", KEYS[3])
`

const luaWorkerList = `-- WorkerList: drop expired workers, return the live ones.
-- KEYS[1] -> P:workers:{w}
-- ARGV[1] -> worker key prefix P:worker:{w}:
-- ARGV[2] -> drain key prefix P:drain:{w}:
-- ARGV[3] -> now, ms
-- Returns the WorkerInfo JSON of live workers.
` + luaLib + `
local gone = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[3])
for _, id in ipairs(gone) do
  redis.call("DEL", ARGV[1] .. id, ARGV[2] .. id)
end
if #gone > 0 then redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[3]) end
local out = {}
for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. ARGV[3], "+inf")) do
  local info = redis.call("GET", ARGV[1] .. id)
  if info then out[#out + 1] = info end
end
return out
`

const luaWorkerDeregister = `-- WorkerDeregister: remove a worker.
-- KEYS[1] -> P:workers:{w}
-- KEYS[2] -> P:worker:{w}:<id>
-- KEYS[3] -> P:drain:{w}:<id>
-- ARGV[1] -> worker id
` + luaLib + `
redis.call("ZREM", KEYS[1], ARGV[1])
redis.call("DEL", KEYS[2], KEYS[3])
return 0
`

const luaWorkerDrain = `-- WorkerRequestDrain: flag a live worker to drain and notify it.
-- KEYS[1] -> P:workers:{w}
-- KEYS[2] -> P:drain:{w}:<id>
-- ARGV[1] -> worker id
-- ARGV[2] -> now, ms
-- ARGV[3] -> control channel P:ch:ctl
-- ARGV[4] -> drain message (JSON) for the control channel
-- Returns 1, or 0 when no live worker has that id.
` + luaLib + `
local exp = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not exp or tonumber(exp) <= tonumber(ARGV[2]) then return 0 end
redis.call("SET", KEYS[2], "1", "PX", 86400000)
redis.call("PUBLISH", ARGV[3], ARGV[4])
return 1
`
