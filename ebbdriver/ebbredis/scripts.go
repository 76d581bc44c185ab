package ebbredis

// Lua scripts. Each one starts with a comment naming its KEYS and ARGV, then
// gets the shared helpers in luaLib appended, then its body.
//
// Costs, measured with callgrind on Redis 7.0, shaped the hot path (Fetch
// and Complete): a redis.call costs ~2.5k instructions before any work, and
// turning a multi-value reply into a Lua table costs more than the command
// itself (an HMGET of 5 fields ~13k, an HGET ~4k). So per task Fetch does one
// HMGET and one HSET, and a successful Complete one HGET, one HSET and one
// PEXPIRE; sorted-set updates are collected into one variadic call.
//
// Conventions that keep them cheap and exact:
//   - Times arrive as decimal strings and are stored as they came; scores in
//     µs are cut from the ns strings with string.sub, never computed, because
//     Lua's number-to-string conversion prints large numbers as 1.7e+15 (and
//     goes through snprintf, which is slow, so even small numbers handed to
//     redis.call go through itoa).
//   - Task keys are built from the queue's key prefix ARGV[1] ("P:{q}:"), which
//     hashes to the same slot as the declared keys.
//   - A task's "k" field packs what scripts need and never changes:
//     <unique flag><priority><retention ms>, the flag being "-" (no unique
//     key), "u" (key in field u, held until the task ends) or "x" (key in
//     field u with its own TTL). Its "ls" field is the latest claim,
//     "<token>\n<k>\n<lease expiry ns>\n<started ns>\n<worker id>", with the
//     token cut off (ls starts with "\n") whenever the task stops running, so
//     "ls starts with token.."\n"" is the whole fencing check.

// luaLib holds helpers shared by the scripts.
const luaLib = `
local itoacache = {}
local function itoa(n)
  local s = itoacache[n]
  if not s then
    s = tostring(n)
    itoacache[n] = s
  end
  return s
end

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

-- k: <unique flag><priority><retention ms>
local function kprio(k)
  local p = string.byte(k, 2)
  if p and p >= 49 and p <= 51 then return p - 48 end
  return 2
end

-- ls after its token is cut off, and the k inside it.
local function lsparts(ls)
  local a = string.find(ls, "\n", 1, true)
  if not a then return "\n", "-2" end
  local b = string.find(ls, "\n", a + 1, true)
  if not b then return string.sub(ls, a), "-2" end
  return string.sub(ls, a), string.sub(ls, a + 1, b - 1)
end

-- A task reached Succeeded, Dead or Cancelled. Free its unique key when it
-- is held until the end (flag "u", or any flag when anyunique) and still
-- names this task; wake awaiters (wk: the waiters hash, false when it is
-- known to be empty).
local function ended(qp, tk, id, k, anyunique, wk, done)
  local f = string.byte(k, 1)
  if f == 117 or (anyunique and f == 120) then
    local u = redis.call("HGET", tk, "u")
    if u then
      local uk = qp .. "u:" .. u
      if redis.call("GET", uk) == id then redis.call("DEL", uk) end
    end
  end
  if wk and redis.call("HDEL", wk, id) == 1 then
    redis.call("PUBLISH", done, id)
  end
end

-- A task reached Succeeded or Cancelled at now (ns): keep it for its
-- retention, appending its expiry score and id to fin for the done set, or
-- delete it at once. Retentions are memoized per k, and the score is
-- FinishedAt+Retention rounded up to the next millisecond (never before
-- the hash expires) so that it only changes, and is only computed, once a
-- millisecond: tonumber and string.format cost more than the ZADD itself.
local retms, retstr = {}, {}
local lastms, lastk, lastexp
local function expire(tk, k, now, fin, id)
  local ms = retms[k]
  if not ms then
    retstr[k] = string.sub(k, 3)
    ms = tonumber(retstr[k]) or 0
    retms[k] = ms
  end
  if ms > 0 then
    redis.call("PEXPIRE", tk, retstr[k])
    local nowms = string.sub(now, 1, -7)
    if nowms ~= lastms or k ~= lastk then
      lastms, lastk = nowms, k
      lastexp = string.format("%d", ((tonumber(nowms) or 0) + 1 + ms) * 1000)
    end
    fin[#fin + 1] = lastexp
    fin[#fin + 1] = id
  else
    redis.call("DEL", tk)
  end
end

-- A Dead task goes back to Queued with attempt 0 and its error history
-- kept; the caller moves it from the dead set to a ready set. k and u are
-- its fields of those names.
local function revive(qp, tk, id, k, u, now)
  redis.call("HSET", tk, "st", "queued", "a", "0", "run", now)
  redis.call("HDEL", tk, "fa", "cx")
  -- Hold the unique key again while the task lives, unless another task
  -- took it meanwhile (the user asked for this retry explicitly).
  if string.byte(k, 1) == 117 and u then
    redis.call("SET", qp .. "u:" .. u, id, "NX")
  end
end

-- Moves up to limit due tasks from the scheduled set sk to the ready sets rk.
local function promote(qp, rk, sk, nowus, limit)
  local due = redis.call("ZRANGEBYSCORE", sk, "-inf", nowus, "LIMIT", 0, limit)
  if #due == 0 then return 0 end
  local add = {{}, {}, {}}
  local n = 0
  for _, id in ipairs(due) do
    local tk = qp .. "t:" .. id
    local f = redis.call("HMGET", tk, "k", "run")
    if f[1] and f[2] then
      redis.call("HSET", tk, "st", "queued")
      local a = add[kprio(f[1])]
      a[#a + 1] = us(f[2])
      a[#a + 1] = id
      n = n + 1
    end
  end
  bulk("ZREM", sk, due)
  for p = 1, 3 do
    if #add[p] > 0 then bulk("ZADD", rk[p], add[p]) end
  end
  return n
end
-- pickDead returns the ids named in ARGV[first…] that are in the dead set
-- key, or, when none are named, the n oldest dead ids.
local function pickDead(key, first, n)
  if #ARGV < first then
    return redis.call("ZRANGE", key, 0, tonumber(n) - 1)
  end
  local ids = {}
  for i = first, #ARGV do
    if redis.call("ZSCORE", key, ARGV[i]) then ids[#ids + 1] = ARGV[i] end
  end
  return ids
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
-- ARGV[4…] -> 8 per task: id, msg, k (see above), RunAt ns,
--             "q" (starts Queued) or "s" (starts Scheduled), max attempts,
--             unique key ("": none), unique TTL ms (0: until the task ends)
-- Returns {created, r…}: created is 1 when the queue's stats hash did not
-- exist (the queue is new to this Redis); one r per task: "" when stored,
-- else the id of the existing task (same id, or holder of the unique key).
` + luaLib + `
local tp = ARGV[1] .. "t:"
local out = {0}
local add = {{}, {}, {}}
local sched = {}
local queued = false
-- One EXISTS for the whole batch: ids are almost always new, so the
-- per-task check runs only when some already exist.
local tks = {}
for i = 4, #ARGV, 8 do tks[#tks + 1] = tp .. ARGV[i] end
local anyold = redis.call("EXISTS", unpack(tks)) > 0
local stored, nstored = {}, 0
for i = 4, #ARGV, 8 do
  local id = ARGV[i]
  local tk = tp .. id
  local r = ""
  local u = ARGV[i + 6]
  local ttl = ARGV[i + 7]
  if stored[id] or (anyold and redis.call("EXISTS", tk) == 1) then
    r = id
  elseif u ~= "" then
    local uk = ARGV[1] .. "u:" .. u
    local ok
    if ttl ~= "0" then
      ok = redis.call("SET", uk, id, "NX", "PX", ttl)
    else
      ok = redis.call("SET", uk, id, "NX")
    end
    if not ok then
      local holder = redis.call("GET", uk)
      if holder and redis.call("EXISTS", tp .. holder) == 1 then
        r = holder
      elseif ttl ~= "0" then
        -- The holder is gone (purged, expired): the lock is stale.
        redis.call("SET", uk, id, "PX", ttl)
      else
        redis.call("SET", uk, id)
      end
    end
  end
  if r == "" then
    local k, run = ARGV[i + 2], ARGV[i + 3]
    local st = "scheduled"
    if ARGV[i + 4] == "q" then
      st = "queued"
      local a = add[kprio(k)]
      a[#a + 1] = us(run)
      a[#a + 1] = id
      queued = true
    else
      sched[#sched + 1] = us(run)
      sched[#sched + 1] = id
    end
    if u ~= "" then
      redis.call("HSET", tk, "msg", ARGV[i + 1], "st", st, "k", k, "run", run, "max", ARGV[i + 5], "u", u)
    else
      redis.call("HSET", tk, "msg", ARGV[i + 1], "st", st, "k", k, "run", run, "max", ARGV[i + 5])
    end
    stored[id] = true
    nstored = nstored + 1
  end
  out[#out + 1] = r
end
for p = 1, 3 do
  if #add[p] > 0 then bulk("ZADD", KEYS[p], add[p]) end
end
if #sched > 0 then bulk("ZADD", KEYS[4], sched) end
out[1] = redis.call("HSETNX", KEYS[5], "since", ARGV[3])
if nstored > 0 then redis.call("HINCRBY", KEYS[5], "enqueued", itoa(nstored)) end
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
-- ARGV[4] -> lease token (not empty)
-- ARGV[5] -> worker id
-- ARGV[6] -> lease expiry, ns
-- ARGV[7] -> how many due tasks to promote at most
-- ARGV[8] -> queue channel P:ch:q:<q>
-- Returns {next due µs or "", then 5 per claimed task: id, msg, attempt, RunAt ns, errors};
-- the tasks already running under the token come first (see below).
` + luaLib + `
local tp = ARGV[1] .. "t:"
local now = ARGV[2]
local need = tonumber(ARGV[3])
if promote(ARGV[1], KEYS, KEYS[4], us(now), tonumber(ARGV[7])) > 0 then
  -- Other idle workers of the queue may take what this fetch leaves.
  redis.call("PUBLISH", ARGV[8], "")
end
local out = {""}
local claimed = {}
local leaseus = us(ARGV[6])
local tokn = ARGV[4] .. "\n"
-- A repeat of a fetch whose reply was lost (the worker's Retry, or a
-- client library resending the command after the connection broke) gets
-- back what the first call claimed. Checked on every call, not only on
-- FetchParams.Retry, because go-redis resends a command on a network error
-- by itself, unseen by the driver. The first call's claims all got this
-- lease expiry as their score (no one extends a lease its worker never
-- heard of); the token tells them from another fetch's that happened to
-- get the same expiry. A fresh token costs one empty ZRANGEBYSCORE.
if need > 0 then
  for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[5], leaseus, leaseus)) do
    if need <= 0 then break end
    local f = redis.call("HMGET", tp .. id, "msg", "a", "run", "err", "ls")
    if f[5] and string.find(f[5], tokn, 1, true) == 1 then
      local n = #out
      out[n + 1] = id
      out[n + 2] = f[1]
      out[n + 3] = tonumber(f[2]) or 1
      out[n + 4] = f[3]
      out[n + 5] = f[4]
      need = need - 1
    end
  end
end
local tail = "\n" .. ARGV[6] .. "\n" .. now .. "\n" .. ARGV[5]
for p = 1, 3 do
  if need <= 0 then break end
  -- Not ZPOPMIN: its reply carries the scores, and Redis formats each
  -- with snprintf, which costs more than the second call.
  local ids = redis.call("ZRANGE", KEYS[p], 0, need - 1)
  if #ids > 0 then redis.call("ZREMRANGEBYRANK", KEYS[p], 0, #ids - 1) end
  for _, id in ipairs(ids) do
    local tk = tp .. id
    local f = redis.call("HMGET", tk, "msg", "a", "run", "err", "k")
    -- A member without a hash is debris (the hash was deleted by hand):
    -- drop it. A hash without msg is claimed and reported as malformed.
    if f[1] or f[3] then
      local a = (tonumber(f[2]) or 0) + 1
      redis.call("HSET", tk, "st", "running", "a", itoa(a), "ls", tokn .. (f[5] or "-2") .. tail)
      claimed[#claimed + 1] = id
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
-- Add in descending id order: a new sorted set starts as a listpack,
-- where each insert scans from the head, so an insert that lands at the
-- head is cheap while ascending order makes the first 128 quadratic.
local leases = {}
for j = #claimed, 1, -1 do
  leases[#leases + 1] = leaseus
  leases[#leases + 1] = claimed[j]
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
-- KEYS[8] -> P:{q}:waiters
-- KEYS[9] -> P:{q}:done
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> queue channel P:ch:q:<q>
-- ARGV[3] -> done channel P:ch:done
-- ARGV[4…] -> records, each starting with its kind:
--             T, lease token: the token of the completions that follow;
--             op, id, now ns, data: a completion, where op is S succeeded
--             (data: result), D dead, C cancelled (data: error JSON to
--             append, or "") or H hand back (data: "");
--             Q or R, id, now ns, data, RetryAt ns: a retry, Q now, R later.
-- Returns one integer per completion: 1 applied, 0 lease lost (the task is
-- not running under that token), 2 no such task.
` + luaLib + `
local qp = ARGV[1]
local tp = qp .. "t:"
local done = ARGV[3]
local wk = redis.call("EXISTS", KEYS[8]) == 1 and KEYS[8]
local tokn = nil
local res = {}
local freed = {}
local ready = {{}, {}, {}}
local sched = {}
local dead = {}
local fin = {}
local ns, nf, nr = 0, 0, 0
local i = 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == "T" then
    tokn = ARGV[i + 1] .. "\n"
    i = i + 2
  else
    local id, now, data, t = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], nil
    if op == "Q" or op == "R" then
      t = ARGV[i + 4]
      i = i + 5
    else
      i = i + 4
    end
    local tk = tp .. id
    local ls = redis.call("HGET", tk, "ls")
    if not ls or string.find(ls, tokn, 1, true) ~= 1 then
      -- Only a refused completion pays for the EXISTS, never the hot path.
      if not ls and redis.call("EXISTS", tk) == 0 then
        res[#res + 1] = 2
      else
        res[#res + 1] = 0
      end
    else
      res[#res + 1] = 1
      freed[#freed + 1] = id
      local rest, k = lsparts(ls)
      if op == "S" then
        if data ~= "" then
          redis.call("HSET", tk, "st", "succeeded", "fa", now, "res", data, "ls", rest)
        else
          redis.call("HSET", tk, "st", "succeeded", "fa", now, "ls", rest)
        end
        expire(tk, k, now, fin, id)
        ended(qp, tk, id, k, false, wk, done)
        ns = ns + 1
      elseif op == "H" then
        local f = redis.call("HMGET", tk, "a", "run")
        local a = (tonumber(f[1]) or 1) - 1
        if a < 0 then a = 0 end
        redis.call("HSET", tk, "st", "queued", "a", itoa(a), "ls", rest)
        local r = ready[kprio(k)]
        r[#r + 1] = us(f[2] or now)
        r[#r + 1] = id
      else
        local e = redis.call("HGET", tk, "err") or ""
        if data ~= "" then e = appenderr(e, data) end
        if op == "Q" then
          redis.call("HSET", tk, "st", "queued", "run", t, "err", e, "ls", rest)
          local r = ready[kprio(k)]
          r[#r + 1] = us(t)
          r[#r + 1] = id
          nr = nr + 1
        elseif op == "R" then
          redis.call("HSET", tk, "st", "retrying", "run", t, "err", e, "ls", rest)
          sched[#sched + 1] = us(t)
          sched[#sched + 1] = id
          nr = nr + 1
        elseif op == "D" then
          redis.call("HSET", tk, "st", "dead", "fa", now, "err", e, "ls", rest)
          dead[#dead + 1] = us(now)
          dead[#dead + 1] = id
          ended(qp, tk, id, k, false, wk, done)
          nf = nf + 1
        else -- C
          redis.call("HSET", tk, "st", "cancelled", "fa", now, "err", e, "ls", rest)
          expire(tk, k, now, fin, id)
          ended(qp, tk, id, k, false, wk, done)
        end
      end
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
if #fin > 0 then bulk("ZADD", KEYS[9], fin) end
if ns > 0 then redis.call("HINCRBY", KEYS[7], "succeeded", itoa(ns)) end
if nf > 0 then redis.call("HINCRBY", KEYS[7], "failed", itoa(nf)) end
if nr > 0 then redis.call("HINCRBY", KEYS[7], "retried", itoa(nr)) end
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
local tp = ARGV[1] .. "t:"
local lost, cancel, add = {}, {}, {}
local until_us = us(ARGV[2])
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local tk = tp .. id
  local f = redis.call("HMGET", tk, "ls", "cx")
  local tokn = ARGV[i + 1] .. "\n"
  local a = f[1] and string.find(f[1], tokn, 1, true) == 1 and string.find(f[1], "\n", #tokn + 1, true)
  local b = a and string.find(f[1], "\n", a + 1, true)
  if not b then
    lost[#lost + 1] = id
  else
    redis.call("HSET", tk, "ls", string.sub(f[1], 1, a) .. ARGV[2] .. string.sub(f[1], b))
    add[#add + 1] = until_us
    add[#add + 1] = id
    if f[2] then cancel[#cancel + 1] = id end
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
-- KEYS[7] -> P:{q}:waiters
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
  local f = redis.call("HMGET", tk, "st", "a", "max", "run", "ls", "err")
  if f[1] == "running" and f[5] then
    local rest, k = lsparts(f[5])
    local e = '{"attempt":' .. (f[2] or "0") .. ',"at":' .. now .. ',"error":' .. ARGV[6]
    -- rest is "\n<k>\n<lease>\n<started>\n<worker>"
    local w = string.match(rest, "^\n[^\n]*\n[^\n]*\n[^\n]*\n(.*)$")
    if w and w ~= "" then e = e .. ',"worker_id":' .. cjson.encode(w) end
    e = appenderr(f[6], e .. "}")
    if (tonumber(f[2]) or 0) >= (tonumber(f[3]) or 1) then
      redis.call("HSET", tk, "st", "dead", "fa", now, "err", e, "ls", rest)
      dead[#dead + 1] = us(now)
      dead[#dead + 1] = id
      ended(qp, tk, id, k, false, KEYS[7], ARGV[5])
      died[#died + 1] = id
    else
      redis.call("HSET", tk, "st", "queued", "err", e, "ls", rest)
      local r = ready[kprio(k)]
      r[#r + 1] = us(f[4] or now)
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
  redis.call("HINCRBY", KEYS[6], "retried", itoa(#requeued))
  redis.call("PUBLISH", ARGV[4], "")
end
if #died > 0 then redis.call("HINCRBY", KEYS[6], "failed", itoa(#died)) end
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
-- KEYS[6] -> P:{q}:waiters
-- KEYS[7] -> P:{q}:done
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> task id
-- ARGV[3] -> now, ns
-- ARGV[4] -> control channel P:ch:ctl
-- ARGV[5] -> cancel message (JSON) for the control channel
-- ARGV[6] -> done channel P:ch:done
-- Returns the state after the call, or false when the task does not exist.
` + luaLib + `
local tk = KEYS[1]
local f = redis.call("HMGET", tk, "st", "k")
local st, k = f[1], f[2] or "-2"
if not st then return false end
if st == "queued" or st == "scheduled" or st == "retrying" then
  if st == "queued" then
    redis.call("ZREM", KEYS[1 + kprio(k)], ARGV[2])
  else
    redis.call("ZREM", KEYS[5], ARGV[2])
  end
  redis.call("HSET", tk, "st", "cancelled", "fa", ARGV[3])
  local fin = {}
  expire(tk, k, ARGV[3], fin, ARGV[2])
  if #fin > 0 then redis.call("ZADD", KEYS[7], fin[1], fin[2]) end
  -- Cancelled before it ran: as if never enqueued, so even a unique key
  -- with a TTL is released.
  ended(ARGV[1], tk, ARGV[2], k, true, KEYS[6], ARGV[6])
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
-- KEYS[2] -> P:{q}:waiters
-- ARGV[1] -> task id
-- Returns the task's state, or false when it does not exist.
` + luaLib + `
local st = redis.call("HGET", KEYS[1], "st")
if not st then return false end
if st ~= "succeeded" and st ~= "dead" and st ~= "cancelled" then
  redis.call("HINCRBY", KEYS[2], ARGV[1], 1)
end
return st
`

const luaAwaitUnmark = `-- TaskAwait, end: uncount a waiter (the task's end may have removed it).
-- KEYS[1] -> P:{q}:waiters
-- ARGV[1] -> task id
` + luaLib + `
if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 1 then
  if redis.call("HINCRBY", KEYS[1], ARGV[1], -1) <= 0 then
    redis.call("HDEL", KEYS[1], ARGV[1])
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
-- Returns how many moved, and how many left the dead list.
` + luaLib + `
local qp, now = ARGV[1], ARGV[2]
local ids = pickDead(KEYS[4], 5, ARGV[4])
local ready = {{}, {}, {}}
local nowus = us(now)
local n = 0
local moved = {}
for _, id in ipairs(ids) do
  local tk = qp .. "t:" .. id
  local f = redis.call("HMGET", tk, "k", "u")
  -- A hash without k is damaged: leave it listed as dead (DeadList shows
  -- it, DeadPurge removes it); a missing hash is only dropped from the list.
  if f[1] or redis.call("EXISTS", tk) == 0 then moved[#moved + 1] = id end
  if f[1] then
    revive(qp, tk, id, f[1], f[2], now)
    local r = ready[kprio(f[1])]
    r[#r + 1] = nowus
    r[#r + 1] = id
    n = n + 1
  end
end
if #moved > 0 then bulk("ZREM", KEYS[4], moved) end
for p = 1, 3 do
  if #ready[p] > 0 then bulk("ZADD", KEYS[p], ready[p]) end
end
if n > 0 then redis.call("PUBLISH", ARGV[3], "") end
return {n, #moved}
`

const luaDeadPurge = `-- DeadPurge: delete Dead tasks.
-- KEYS[1] -> P:{q}:dead
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> with no ids: how many of the oldest dead tasks to delete
-- ARGV[3…] -> ids (none: the oldest dead tasks)
-- Returns how many were deleted, and how many were looked at.
` + luaLib + `
local qp = ARGV[1]
local ids = pickDead(KEYS[1], 3, ARGV[2])
local n = 0
for _, id in ipairs(ids) do
  n = n + redis.call("DEL", qp .. "t:" .. id)
end
if #ids > 0 then bulk("ZREM", KEYS[1], ids) end
return {n, #ids}
`

const luaRetry = `-- TaskRetry: make a Scheduled, Retrying or Dead task Queued now.
-- KEYS[1] -> P:{q}:t:<id>
-- KEYS[2] -> P:{q}:ready:1
-- KEYS[3] -> P:{q}:ready:2
-- KEYS[4] -> P:{q}:ready:3
-- KEYS[5] -> P:{q}:scheduled
-- KEYS[6] -> P:{q}:dead
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> task id
-- ARGV[3] -> now, ns
-- ARGV[4] -> queue channel P:ch:q:<q>
-- Returns {1, "queued"} when the task moved, {0, its state} when its state
-- does not allow it, or false when the task does not exist.
` + luaLib + `
local tk, id, now = KEYS[1], ARGV[2], ARGV[3]
local f = redis.call("HMGET", tk, "st", "k", "u")
local st, k = f[1], f[2]
if not st and redis.call("EXISTS", tk) == 0 then return false end
-- Without k the record is damaged: leave it as DeadRetry does.
if not k or (st ~= "scheduled" and st ~= "retrying" and st ~= "dead") then
  return {0, st or ""}
end
if st == "dead" then
  revive(ARGV[1], tk, id, k, f[3], now)
  redis.call("ZREM", KEYS[6], id)
else
  -- run moves to now: the task waits from the retry, as OldestQueuedAt
  -- reports, behind the tasks already queued.
  redis.call("HSET", tk, "st", "queued", "run", now)
  redis.call("ZREM", KEYS[5], id)
end
redis.call("ZADD", KEYS[1 + kprio(k)], us(now), id)
redis.call("PUBLISH", ARGV[4], "")
return {1, "queued"}
`

const luaDelete = `-- TaskDelete: delete a task that is not Running, with its index entries and
-- its unique key.
-- KEYS[1] -> P:{q}:t:<id>
-- KEYS[2] -> P:{q}:ready:1
-- KEYS[3] -> P:{q}:ready:2
-- KEYS[4] -> P:{q}:ready:3
-- KEYS[5] -> P:{q}:scheduled
-- KEYS[6] -> P:{q}:dead
-- KEYS[7] -> P:{q}:done
-- KEYS[8] -> P:{q}:waiters
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> task id
-- ARGV[3] -> done channel P:ch:done
-- Returns the state the task had ("running": it was left alone), or false
-- when it does not exist.
` + luaLib + `
local tk, id = KEYS[1], ARGV[2]
local f = redis.call("HMGET", tk, "st", "u")
if not f[1] and redis.call("EXISTS", tk) == 0 then return false end
local st = f[1] or ""
if st == "running" then return st end
-- Every set, whatever st says: deleting is rare, and a damaged record
-- leaves no member behind.
for i = 2, 7 do redis.call("ZREM", KEYS[i], id) end
if f[2] then
  local uk = ARGV[1] .. "u:" .. f[2]
  if redis.call("GET", uk) == id then redis.call("DEL", uk) end
end
redis.call("DEL", tk)
-- Awaiters learn at once that the task is gone.
if redis.call("HDEL", KEYS[8], id) == 1 then redis.call("PUBLISH", ARGV[3], id) end
return st
`

const luaCleanup = `-- Cleanup: delete Dead tasks that died before a cutoff, and drop finished
-- tasks whose retention ended (their hashes expired) from the done set.
-- KEYS[1] -> P:{q}:dead
-- KEYS[2] -> P:{q}:done
-- ARGV[1] -> queue key prefix P:{q}:
-- ARGV[2] -> cutoff, µs (exclusive)
-- ARGV[3] -> how many to delete and drop at most, together
-- ARGV[4] -> now, µs
-- Returns how many were deleted and dropped.
` + luaLib + `
local limit = tonumber(ARGV[3])
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", "(" .. ARGV[2], "LIMIT", 0, limit)
for _, id in ipairs(ids) do
  redis.call("DEL", ARGV[1] .. "t:" .. id)
end
if #ids > 0 then bulk("ZREM", KEYS[1], ids) end
-- The lowest ranks are the earliest expiries: removing by rank keeps the
-- call bounded by the limit, where ZREMRANGEBYSCORE would take a whole
-- backlog (millions after a busy hour without Cleanup) in one blocking call.
local n = #ids
if n < limit then
  local due = redis.call("ZCOUNT", KEYS[2], "-inf", ARGV[4])
  if due > limit - n then due = limit - n end
  if due > 0 then
    redis.call("ZREMRANGEBYRANK", KEYS[2], 0, itoa(due - 1))
    n = n + due
  end
end
return n
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

const luaQueueStats = `-- QueueStats: every count of one queue in one reply (read only).
-- KEYS[1] -> P:{q}:ready:1
-- KEYS[2] -> P:{q}:ready:2
-- KEYS[3] -> P:{q}:ready:3
-- KEYS[4] -> P:{q}:scheduled
-- KEYS[5] -> P:{q}:leases
-- KEYS[6] -> P:{q}:dead
-- KEYS[7] -> P:{q}:stats
-- ARGV[1] -> now, µs
-- Returns {queued, oldest ready score or "", scheduled, due at now,
-- earliest scheduled score or "", leased, dead, enqueued, succeeded, failed,
-- retried}; scores are returned as Redis formats them, never converted.
` + luaLib + `
local queued, oldest, oldestn = 0, "", nil
for i = 1, 3 do
  local n = redis.call("ZCARD", KEYS[i])
  if n > 0 then
    queued = queued + n
    local z = redis.call("ZRANGE", KEYS[i], 0, 0, "WITHSCORES")
    local sc = tonumber(z[2])
    if not oldestn or sc < oldestn then
      oldest, oldestn = z[2], sc
    end
  end
end
local scheduled = redis.call("ZCARD", KEYS[4])
local due, nextdue = 0, ""
if scheduled > 0 then
  due = redis.call("ZCOUNT", KEYS[4], "-inf", ARGV[1])
  nextdue = redis.call("ZRANGE", KEYS[4], 0, 0, "WITHSCORES")[2]
end
local t = redis.call("HMGET", KEYS[7], "enqueued", "succeeded", "failed", "retried")
return {queued, oldest, scheduled, due, nextdue, redis.call("ZCARD", KEYS[5]),
  redis.call("ZCARD", KEYS[6]), t[1] or "0", t[2] or "0", t[3] or "0", t[4] or "0"}
`
