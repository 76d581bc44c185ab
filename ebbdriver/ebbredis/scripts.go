package ebbredis

// Lua scripts. Each one starts with a comment naming its KEYS and ARGV, then
// gets the shared helpers of luaLib it calls (see libFor), then its body. Every key a
// script touches is one of its KEYS: a task is a field of its queue's
// P:{q}:tasks hash and a unique lock a field of P:{q}:uniq, so scripts that
// learn task ids from a sorted set (fetch, promotion, rescue, dead retry and
// purge, cleanup) still touch only declared keys (TestScriptsDeclareKeys
// runs the conformance suite with a check of that in every redis.call).
//
// Costs, measured with callgrind on Redis 7.0, shaped the hot path (Fetch
// and Complete): a redis.call costs ~2.5k instructions before any work, and
// turning a multi-value reply into a Lua table costs more than the command
// itself (an HMGET of 5 fields ~13k, an HGET ~4k). So a task is one record
// (see codec.go), and each step reads it with one HGET and writes it with
// one HSET; sorted-set updates are collected into one variadic call.
//
// Conventions that keep them cheap and exact:
//   - Times arrive as decimal strings and are stored as they came; scores in
//     µs are cut from the ns strings with string.sub, never computed, because
//     Lua's number-to-string conversion prints large numbers as 1.7e+15 (and
//     goes through snprintf, which is slow, so even small numbers handed to
//     redis.call go through itoa).
//   - A record's k packs what scripts need and never changes:
//     <unique flag><priority><retention ms>, the flag being "-" (no unique
//     key), "u" (key held until the task ends) or "x" (key with its own
//     TTL). Its tok is the lease token of the claim, emptied whenever the
//     task stops running, so "tok equals the caller's token" is the whole
//     fencing check.

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

-- A task record (codec.go): a header line, then tok, w (worker id), u
-- (unique key), err, res by the lengths the header gives, then msg.
local RECP = "^(%l+) (%d+) (%d+) (%S+) (%d+) (%d+) (%d) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)\n()"
local function dec(s)
  local st, a, run, k, mx, fa, cx, lease, started, n1, n2, n3, n4, n5, p = string.match(s, RECP)
  if not st then return nil end
  local t = {st = st, a = a, run = run, k = k, max = mx, fa = fa, cx = cx, lease = lease, started = started}
  local q = p + n1
  t.tok = string.sub(s, p, q - 1)
  p = q + n2
  t.w = string.sub(s, q, p - 1)
  q = p + n3
  t.u = string.sub(s, p, q - 1)
  p = q + n4
  t.err = string.sub(s, q, p - 1)
  q = p + n5
  t.res = string.sub(s, p, q - 1)
  t.msg = string.sub(s, q)
  return t
end

local function enc(t)
  return t.st .. " " .. t.a .. " " .. t.run .. " " .. t.k .. " " .. t.max .. " " .. t.fa .. " " .. t.cx .. " " ..
    t.lease .. " " .. t.started .. " " .. itoa(#t.tok) .. " " .. itoa(#t.w) .. " " .. itoa(#t.u) .. " " ..
    itoa(#t.err) .. " " .. itoa(#t.res) .. "\n" .. t.tok .. t.w .. t.u .. t.err .. t.res .. t.msg
end

-- A record whose header cannot be read (damaged by hand) becomes a queued
-- task whose msg is the whole old record: the fetch that claims it reports
-- it malformed, the worker dead-letters it, and its bytes stay readable.
local function damaged(s, now)
  return {st = "queued", a = "0", run = now, k = "-2", max = "1", fa = "0", cx = "0", lease = "0",
    started = "0", tok = "", w = "", u = "", err = "", res = "", msg = s}
end

-- A task reached Succeeded, Dead or Cancelled. Free its unique key (a field
-- of uk, its expiry in uxk) when it is held until the end (flag "u", or any
-- flag when anyunique) and still names this task; wake awaiters (wk: the
-- waiters hash, false when it is known to be empty).
local function ended(uk, uxk, t, id, anyunique, wk, done)
  local f = string.byte(t.k, 1)
  if t.u ~= "" and (f == 117 or (anyunique and f == 120)) then
    if redis.call("HGET", uk, t.u) == id then
      redis.call("HDEL", uk, t.u)
      if f == 120 then redis.call("ZREM", uxk, t.u) end
    end
  end
  if wk and redis.call("HDEL", wk, id) == 1 then
    redis.call("PUBLISH", done, id)
  end
end

-- A task reached Succeeded or Cancelled at now (ns): keep it in the tasks
-- hash tk for its retention, appending its expiry score and id to fin for
-- the done set (Cleanup deletes it from there), or delete it at once.
-- Retentions are memoized per k, and the score is FinishedAt+Retention
-- rounded up to the next millisecond, so that it only changes, and is only
-- computed, once a millisecond: tonumber and string.format cost more than
-- the ZADD itself.
local retms = {}
local lastms, lastk, lastexp
local function keep(tk, t, id, now, fin)
  local k = t.k
  local ms = retms[k]
  if not ms then
    ms = tonumber(string.sub(k, 3)) or 0
    retms[k] = ms
  end
  if ms > 0 then
    redis.call("HSET", tk, id, enc(t))
    local nowms = string.sub(now, 1, -7)
    if nowms ~= lastms or k ~= lastk then
      lastms, lastk = nowms, k
      lastexp = string.format("%d", ((tonumber(nowms) or 0) + 1 + ms) * 1000)
    end
    fin[#fin + 1] = lastexp
    fin[#fin + 1] = id
  else
    redis.call("HDEL", tk, id)
  end
end

-- A Dead task goes back to Queued with attempt 0 and its error history
-- kept; the caller stores t and moves it from the dead set to a ready set.
local function revive(uk, t, id, now)
  t.st, t.a, t.run, t.fa, t.cx, t.tok = "queued", "0", now, "0", "0", ""
  -- Hold the unique key again while the task lives, unless another task
  -- took it meanwhile (the user asked for this retry explicitly).
  if string.byte(t.k, 1) == 117 and t.u ~= "" then
    redis.call("HSETNX", uk, t.u, id)
  end
end

-- Moves up to limit due tasks from the scheduled set sk to the ready sets
-- rk, reading and writing their records in the tasks hash tk.
local function promote(rk, sk, tk, nowus, limit)
  local due = redis.call("ZRANGEBYSCORE", sk, "-inf", nowus, "LIMIT", 0, limit)
  if #due == 0 then return 0 end
  local add = {{}, {}, {}}
  local n = 0
  for _, id in ipairs(due) do
    local s = redis.call("HGET", tk, id)
    if s then
      local t = dec(s)
      local a
      if t then
        t.st = "queued"
        redis.call("HSET", tk, id, enc(t))
        a = add[kprio(t.k)]
        a[#a + 1] = us(t.run)
      else
        -- Damaged: the fetch that claims it reports it.
        a = add[2]
        a[#a + 1] = nowus
      end
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
-- KEYS[6] -> P:{q}:tasks
-- KEYS[7] -> P:{q}:uniq
-- KEYS[8] -> P:{q}:uniqexp
-- ARGV[1] -> queue channel P:ch:q:<q>
-- ARGV[2] -> now, ns
-- ARGV[3…] -> 6 per task: id, record (codec.go), set (1…3: ready:<p>,
--             4: scheduled), score µs, unique key ("": none), unique key
--             expiry µs ("0": held until the task ends)
-- Returns {created, r…}: created is 1 when the queue's stats hash counted
-- no enqueue before (the queue is new to this Redis); one r per task: "" when stored,
-- else the id of the existing task (same id, or holder of the unique key).
` + luaLib + `
local nowus = tonumber(us(ARGV[2]))
local out = {0}
local add = {{}, {}, {}, {}}
local nstored = 0
for i = 3, #ARGV, 6 do
  local id, u = ARGV[i], ARGV[i + 4]
  local r = ""
  if u == "" then
    -- Ids are almost always new: one call both checks and stores.
    if redis.call("HSETNX", KEYS[6], id, ARGV[i + 1]) == 0 then r = id end
  elseif redis.call("HEXISTS", KEYS[6], id) == 1 then
    r = id
  else
    local holder = redis.call("HGET", KEYS[7], u)
    if holder and redis.call("HEXISTS", KEYS[6], holder) == 1 then
      local exp = redis.call("ZSCORE", KEYS[8], u)
      if not exp or tonumber(exp) > nowus then r = holder end
    end
    -- Otherwise the lock is free, expired or stale (its holder purged).
    if r == "" then
      redis.call("HSET", KEYS[7], u, id)
      if ARGV[i + 5] ~= "0" then
        redis.call("ZADD", KEYS[8], ARGV[i + 5], u)
      elseif holder then
        redis.call("ZREM", KEYS[8], u)
      end
      redis.call("HSET", KEYS[6], id, ARGV[i + 1])
    end
  end
  if r == "" then
    local a = add[tonumber(ARGV[i + 2])]
    a[#a + 1] = ARGV[i + 3]
    a[#a + 1] = id
    nstored = nstored + 1
  end
  out[#out + 1] = r
end
-- queued: a ready set was empty before this call (its tasks are new ids,
-- so it holds exactly them). Only then can a worker be waiting: see
-- EnqueueOne.
local queued = false
for p = 1, 4 do
  if #add[p] > 0 then
    bulk("ZADD", KEYS[p], add[p])
    if p < 4 and not queued then queued = redis.call("ZCARD", KEYS[p]) * 2 == #add[p] end
  end
end
-- A total equal to this call's count means the stats hash had none: the
-- queue is new to this Redis.
if nstored > 0 and redis.call("HINCRBY", KEYS[5], "enqueued", itoa(nstored)) == nstored then out[1] = 1 end
if queued then redis.call("PUBLISH", ARGV[1], "") end
return out
`

const luaEnqueueOne = `-- EnqueueOne: store one new task without a unique key, the call
-- most producers make.
-- KEYS[1] -> P:{q}:ready:<priority>, or P:{q}:scheduled
-- KEYS[2] -> P:{q}:stats
-- KEYS[3] -> P:{q}:tasks
-- ARGV[1] -> id
-- ARGV[2] -> record (codec.go)
-- ARGV[3] -> score µs
-- ARGV[4] -> queue channel P:ch:q:<q>, or "" for a scheduled task
-- Returns created (1 when the queue's stats hash counted no enqueue before)
-- when it stored the task, the id when a task with that id exists: a number
-- or a string, not Enqueue's table, whose conversion costs Redis a tenth of
-- the call.
if redis.call("HSETNX", KEYS[3], ARGV[1], ARGV[2]) == 0 then return ARGV[1] end
redis.call("ZADD", KEYS[1], ARGV[3], ARGV[1])
local created = 0
if redis.call("HINCRBY", KEYS[2], "enqueued", 1) == 1 then created = 1 end
-- Only a set that was empty can have workers waiting on it: the task that
-- made it non-empty woke them all, and a worker with room fetches until its
-- sets are empty before it waits again. Under a backlog this saves a
-- message per task to every listener (each worker, the control plane's
-- pattern subscription, every node of a Redis Cluster).
if ARGV[4] ~= "" and redis.call("ZCARD", KEYS[1]) == 1 then redis.call("PUBLISH", ARGV[4], "") end
return created
`

const luaFetch = `-- Fetch: promote due tasks, then claim up to a limit of Queued tasks.
-- KEYS[1] -> P:{q}:ready:1
-- KEYS[2] -> P:{q}:ready:2
-- KEYS[3] -> P:{q}:ready:3
-- KEYS[4] -> P:{q}:scheduled
-- KEYS[5] -> P:{q}:leases
-- KEYS[6] -> P:{q}:tasks
-- ARGV[1] -> now, ns
-- ARGV[2] -> how many tasks to claim at most (may be 0)
-- ARGV[3] -> lease token (not empty)
-- ARGV[4] -> worker id
-- ARGV[5] -> lease expiry, ns
-- ARGV[6] -> how many due tasks to promote at most
-- ARGV[7] -> queue channel P:ch:q:<q>
-- Returns {next due µs or "", then 2 per claimed task: id, its record};
-- the tasks already running under the token come first (see below).
` + luaLib + `
local now = ARGV[1]
local need = tonumber(ARGV[2])
if promote(KEYS, KEYS[4], KEYS[6], us(now), tonumber(ARGV[6])) > 0 then
  -- Other idle workers of the queue may take what this fetch leaves.
  redis.call("PUBLISH", ARGV[7], "")
end
local out = {""}
local claimed = {}
local lease = ARGV[5]
local leaseus = us(lease)
local tok = ARGV[3]
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
    local s = redis.call("HGET", KEYS[6], id)
    local t = s and dec(s)
    if t and t.st == "running" and t.tok == tok then
      out[#out + 1] = id
      out[#out + 1] = s
      need = need - 1
    end
  end
end
for p = 1, 3 do
  if need <= 0 then break end
  -- Not ZPOPMIN: its reply carries the scores, and Redis formats each
  -- with snprintf, which costs more than the second call.
  local ids = redis.call("ZRANGE", KEYS[p], 0, need - 1)
  if #ids > 0 then redis.call("ZREMRANGEBYRANK", KEYS[p], 0, #ids - 1) end
  for _, id in ipairs(ids) do
    local s = redis.call("HGET", KEYS[6], id)
    -- A member without a record is debris (deleted by hand): drop it.
    if s then
      local t = dec(s) or damaged(s, now)
      t.st, t.a, t.tok, t.w, t.lease, t.started = "running", itoa((tonumber(t.a) or 0) + 1), tok, ARGV[4], lease, now
      s = enc(t)
      redis.call("HSET", KEYS[6], id, s)
      claimed[#claimed + 1] = id
      out[#out + 1] = id
      out[#out + 1] = s
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
-- KEYS[10] -> P:{q}:tasks
-- KEYS[11] -> P:{q}:uniq
-- KEYS[12] -> P:{q}:uniqexp
-- ARGV[1] -> queue channel P:ch:q:<q>
-- ARGV[2] -> done channel P:ch:done
-- ARGV[3…] -> records, each starting with its kind:
--             T, lease token: the token of the completions that follow;
--             op, id, now ns, data: a completion, where op is S succeeded
--             (data: result), D dead, C cancelled (data: error JSON to
--             append, or "") or H hand back (data: "");
--             Q or R, id, now ns, data, RetryAt ns: a retry, Q now, R later.
-- Returns one integer per completion: 1 applied, 0 lease lost (the task is
-- not running under that token), 2 no such task.
` + luaLib + `
local tk, uk, uxk = KEYS[10], KEYS[11], KEYS[12]
local done = ARGV[2]
local wk = redis.call("EXISTS", KEYS[8]) == 1 and KEYS[8]
local tok = nil
local res = {}
local freed = {}
local ready = {{}, {}, {}}
local sched = {}
local dead = {}
local fin = {}
local ns, nf, nr = 0, 0, 0
local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  if op == "T" then
    tok = ARGV[i + 1]
    i = i + 2
  else
    local id, now, data, at = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], nil
    if op == "Q" or op == "R" then
      at = ARGV[i + 4]
      i = i + 5
    else
      i = i + 4
    end
    local s = redis.call("HGET", tk, id)
    local t = s and dec(s)
    if not t or t.st ~= "running" or t.tok ~= tok then
      if s then res[#res + 1] = 0 else res[#res + 1] = 2 end
    else
      res[#res + 1] = 1
      freed[#freed + 1] = id
      t.tok = ""
      if op == "S" then
        t.st, t.fa = "succeeded", now
        if data ~= "" then t.res = data end
        keep(tk, t, id, now, fin)
        ended(uk, uxk, t, id, false, wk, done)
        ns = ns + 1
      elseif op == "H" then
        local a = (tonumber(t.a) or 1) - 1
        if a < 0 then a = 0 end
        t.st, t.a = "queued", itoa(a)
        redis.call("HSET", tk, id, enc(t))
        local r = ready[kprio(t.k)]
        r[#r + 1] = us(t.run)
        r[#r + 1] = id
      else
        if data ~= "" then t.err = appenderr(t.err, data) end
        if op == "Q" then
          t.st, t.run = "queued", at
          redis.call("HSET", tk, id, enc(t))
          local r = ready[kprio(t.k)]
          r[#r + 1] = us(at)
          r[#r + 1] = id
          nr = nr + 1
        elseif op == "R" then
          t.st, t.run = "retrying", at
          redis.call("HSET", tk, id, enc(t))
          sched[#sched + 1] = us(at)
          sched[#sched + 1] = id
          nr = nr + 1
        elseif op == "D" then
          t.st, t.fa = "dead", now
          redis.call("HSET", tk, id, enc(t))
          dead[#dead + 1] = us(now)
          dead[#dead + 1] = id
          ended(uk, uxk, t, id, false, wk, done)
          nf = nf + 1
        else -- C
          t.st, t.fa = "cancelled", now
          keep(tk, t, id, now, fin)
          ended(uk, uxk, t, id, false, wk, done)
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
if queued then redis.call("PUBLISH", ARGV[1], "") end
return res
`

const luaExtend = `-- ExtendLeases: move lease expiries of Running tasks the caller still owns.
-- KEYS[1] -> P:{q}:leases
-- KEYS[2] -> P:{q}:tasks
-- ARGV[1] -> new lease expiry, ns
-- ARGV[2…] -> 2 per lease: id, lease token
-- Returns {lost ids, ids whose cancellation was requested}.
` + luaLib + `
local lost, cancel, add = {}, {}, {}
local until_us = us(ARGV[1])
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local s = redis.call("HGET", KEYS[2], id)
  local t = s and dec(s)
  if not t or t.st ~= "running" or t.tok ~= ARGV[i + 1] then
    lost[#lost + 1] = id
  else
    t.lease = ARGV[1]
    redis.call("HSET", KEYS[2], id, enc(t))
    add[#add + 1] = until_us
    add[#add + 1] = id
    if t.cx == "1" then cancel[#cancel + 1] = id end
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
-- KEYS[8] -> P:{q}:tasks
-- KEYS[9] -> P:{q}:uniq
-- KEYS[10] -> P:{q}:uniqexp
-- ARGV[1] -> now, ns
-- ARGV[2] -> how many tasks to rescue at most
-- ARGV[3] -> queue channel P:ch:q:<q>
-- ARGV[4] -> done channel P:ch:done
-- ARGV[5] -> the error message, as a JSON string
-- Returns {requeued ids, dead ids}.
` + luaLib + `
local now = ARGV[1]
local ids = redis.call("ZRANGEBYSCORE", KEYS[4], "-inf", "(" .. us(now), "LIMIT", 0, tonumber(ARGV[2]))
local requeued, died = {}, {}
local ready = {{}, {}, {}}
local dead = {}
for _, id in ipairs(ids) do
  local s = redis.call("HGET", KEYS[8], id)
  local t = s and dec(s)
  if t and t.st == "running" then
    local e = '{"attempt":' .. t.a .. ',"at":' .. now .. ',"error":' .. ARGV[5]
    if t.w ~= "" then e = e .. ',"worker_id":' .. cjson.encode(t.w) end
    t.err = appenderr(t.err, e .. "}")
    t.tok = ""
    if (tonumber(t.a) or 0) >= (tonumber(t.max) or 1) then
      t.st, t.fa = "dead", now
      redis.call("HSET", KEYS[8], id, enc(t))
      dead[#dead + 1] = us(now)
      dead[#dead + 1] = id
      ended(KEYS[9], KEYS[10], t, id, false, KEYS[7], ARGV[4])
      died[#died + 1] = id
    else
      t.st = "queued"
      redis.call("HSET", KEYS[8], id, enc(t))
      local r = ready[kprio(t.k)]
      r[#r + 1] = us(t.run)
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
  redis.call("PUBLISH", ARGV[3], "")
end
if #died > 0 then redis.call("HINCRBY", KEYS[6], "failed", itoa(#died)) end
return {requeued, died}
`

const luaPromote = `-- PromoteDue: move due Scheduled/Retrying tasks to Queued.
-- KEYS[1] -> P:{q}:ready:1
-- KEYS[2] -> P:{q}:ready:2
-- KEYS[3] -> P:{q}:ready:3
-- KEYS[4] -> P:{q}:scheduled
-- KEYS[5] -> P:{q}:tasks
-- ARGV[1] -> now, ns
-- ARGV[2] -> how many to move at most
-- ARGV[3] -> queue channel P:ch:q:<q>
-- Returns how many moved.
` + luaLib + `
local n = promote(KEYS, KEYS[4], KEYS[5], us(ARGV[1]), tonumber(ARGV[2]))
if n > 0 then redis.call("PUBLISH", ARGV[3], "") end
return n
`

const luaCancel = `-- TaskCancel: cancel a waiting task at once, or flag a running one.
-- KEYS[1] -> P:{q}:tasks
-- KEYS[2] -> P:{q}:ready:1
-- KEYS[3] -> P:{q}:ready:2
-- KEYS[4] -> P:{q}:ready:3
-- KEYS[5] -> P:{q}:scheduled
-- KEYS[6] -> P:{q}:waiters
-- KEYS[7] -> P:{q}:done
-- KEYS[8] -> P:{q}:uniq
-- KEYS[9] -> P:{q}:uniqexp
-- ARGV[1] -> task id
-- ARGV[2] -> now, ns
-- ARGV[3] -> control channel P:ch:ctl
-- ARGV[4] -> cancel message (JSON) for the control channel
-- ARGV[5] -> done channel P:ch:done
-- Returns the state after the call, "" when the record cannot be read, or
-- false when the task does not exist.
` + luaLib + `
local id = ARGV[1]
local s = redis.call("HGET", KEYS[1], id)
if not s then return false end
local t = dec(s)
if not t then return "" end
local st = t.st
if st == "queued" or st == "scheduled" or st == "retrying" then
  if st == "queued" then
    redis.call("ZREM", KEYS[1 + kprio(t.k)], id)
  else
    redis.call("ZREM", KEYS[5], id)
  end
  t.st, t.fa = "cancelled", ARGV[2]
  local fin = {}
  keep(KEYS[1], t, id, ARGV[2], fin)
  if #fin > 0 then redis.call("ZADD", KEYS[7], fin[1], fin[2]) end
  -- Cancelled before it ran: as if never enqueued, so even a unique key
  -- with a TTL is released.
  ended(KEYS[8], KEYS[9], t, id, true, KEYS[6], ARGV[5])
  return "cancelled"
end
if st == "running" then
  t.cx = "1"
  redis.call("HSET", KEYS[1], id, enc(t))
  redis.call("PUBLISH", ARGV[3], ARGV[4])
end
return st
`

const luaAwaitMark = `-- TaskAwait, start: count a waiter unless the task already ended.
-- KEYS[1] -> P:{q}:tasks
-- KEYS[2] -> P:{q}:waiters
-- ARGV[1] -> task id
-- Returns the task's record, or false when it does not exist.
` + luaLib + `
local s = redis.call("HGET", KEYS[1], ARGV[1])
if not s then return false end
local st = string.match(s, "^%l*")
if st ~= "succeeded" and st ~= "dead" and st ~= "cancelled" then
  redis.call("HINCRBY", KEYS[2], ARGV[1], 1)
end
return s
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
-- KEYS[5] -> P:{q}:tasks
-- KEYS[6] -> P:{q}:uniq
-- ARGV[1] -> now, ns
-- ARGV[2] -> queue channel P:ch:q:<q>
-- ARGV[3] -> with no ids: how many of the oldest dead tasks to move
-- ARGV[4…] -> ids (none: the oldest dead tasks)
-- Returns how many moved, and how many left the dead list.
` + luaLib + `
local now = ARGV[1]
local ids = pickDead(KEYS[4], 4, ARGV[3])
local ready = {{}, {}, {}}
local nowus = us(now)
local n = 0
local moved = {}
for _, id in ipairs(ids) do
  local s = redis.call("HGET", KEYS[5], id)
  local t = s and dec(s)
  -- A record that cannot be read is damaged: leave it listed as dead
  -- (DeadList shows it, DeadPurge removes it); a missing one is only
  -- dropped from the list.
  if t or not s then moved[#moved + 1] = id end
  if t then
    revive(KEYS[6], t, id, now)
    redis.call("HSET", KEYS[5], id, enc(t))
    local r = ready[kprio(t.k)]
    r[#r + 1] = nowus
    r[#r + 1] = id
    n = n + 1
  end
end
if #moved > 0 then bulk("ZREM", KEYS[4], moved) end
for p = 1, 3 do
  if #ready[p] > 0 then bulk("ZADD", KEYS[p], ready[p]) end
end
if n > 0 then redis.call("PUBLISH", ARGV[2], "") end
return {n, #moved}
`

const luaDeadPurge = `-- DeadPurge: delete Dead tasks.
-- KEYS[1] -> P:{q}:dead
-- KEYS[2] -> P:{q}:tasks
-- ARGV[1] -> with no ids: how many of the oldest dead tasks to delete
-- ARGV[2…] -> ids (none: the oldest dead tasks)
-- Returns how many were deleted, and how many were looked at.
` + luaLib + `
local ids = pickDead(KEYS[1], 2, ARGV[1])
local n = 0
for i = 1, #ids, 1000 do
  n = n + redis.call("HDEL", KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
end
if #ids > 0 then bulk("ZREM", KEYS[1], ids) end
return {n, #ids}
`

const luaRetry = `-- TaskRetry: make a Scheduled, Retrying or Dead task Queued now.
-- KEYS[1] -> P:{q}:tasks
-- KEYS[2] -> P:{q}:ready:1
-- KEYS[3] -> P:{q}:ready:2
-- KEYS[4] -> P:{q}:ready:3
-- KEYS[5] -> P:{q}:scheduled
-- KEYS[6] -> P:{q}:dead
-- KEYS[7] -> P:{q}:uniq
-- ARGV[1] -> task id
-- ARGV[2] -> now, ns
-- ARGV[3] -> queue channel P:ch:q:<q>
-- Returns {1, "queued"} when the task moved, {0, its state} when its state
-- does not allow it, or false when the task does not exist.
` + luaLib + `
local id, now = ARGV[1], ARGV[2]
local s = redis.call("HGET", KEYS[1], id)
if not s then return false end
local t = dec(s)
-- A record that cannot be read is left as it is, as DeadRetry does.
if not t then return {0, ""} end
local st = t.st
if st ~= "scheduled" and st ~= "retrying" and st ~= "dead" then
  return {0, st}
end
if st == "dead" then
  revive(KEYS[7], t, id, now)
  redis.call("ZREM", KEYS[6], id)
else
  -- run moves to now: the task waits from the retry, as OldestQueuedAt
  -- reports, behind the tasks already queued.
  t.st, t.run = "queued", now
  redis.call("ZREM", KEYS[5], id)
end
redis.call("HSET", KEYS[1], id, enc(t))
redis.call("ZADD", KEYS[1 + kprio(t.k)], us(now), id)
redis.call("PUBLISH", ARGV[3], "")
return {1, "queued"}
`

const luaDelete = `-- TaskDelete: delete a task that is not Running, with its index entries and
-- its unique key.
-- KEYS[1] -> P:{q}:tasks
-- KEYS[2] -> P:{q}:ready:1
-- KEYS[3] -> P:{q}:ready:2
-- KEYS[4] -> P:{q}:ready:3
-- KEYS[5] -> P:{q}:scheduled
-- KEYS[6] -> P:{q}:dead
-- KEYS[7] -> P:{q}:done
-- KEYS[8] -> P:{q}:waiters
-- KEYS[9] -> P:{q}:uniq
-- KEYS[10] -> P:{q}:uniqexp
-- ARGV[1] -> task id
-- ARGV[2] -> done channel P:ch:done
-- Returns the state the task had ("running": it was left alone; "": its
-- record could not be read), or false when it does not exist.
` + luaLib + `
local id = ARGV[1]
local s = redis.call("HGET", KEYS[1], id)
if not s then return false end
local t = dec(s)
local st = t and t.st or ""
if st == "running" then return st end
-- Every set, whatever st says: deleting is rare, and a damaged record
-- leaves no member behind.
for i = 2, 7 do redis.call("ZREM", KEYS[i], id) end
if t and t.u ~= "" and redis.call("HGET", KEYS[9], t.u) == id then
  redis.call("HDEL", KEYS[9], t.u)
  redis.call("ZREM", KEYS[10], t.u)
end
redis.call("HDEL", KEYS[1], id)
-- Awaiters learn at once that the task is gone.
if redis.call("HDEL", KEYS[8], id) == 1 then redis.call("PUBLISH", ARGV[2], id) end
return st
`

const luaCleanup = `-- Cleanup: delete Dead tasks that died before a cutoff and finished tasks
-- whose retention ended, and drop expired unique locks.
-- KEYS[1] -> P:{q}:dead
-- KEYS[2] -> P:{q}:done
-- KEYS[3] -> P:{q}:tasks
-- KEYS[4] -> P:{q}:uniq
-- KEYS[5] -> P:{q}:uniqexp
-- ARGV[1] -> cutoff, µs (exclusive)
-- ARGV[2] -> how many tasks to delete at most (and, apart, how many locks)
-- ARGV[3] -> now, µs
-- Returns how many tasks were deleted.
` + luaLib + `
local limit = tonumber(ARGV[2])
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", "(" .. ARGV[1], "LIMIT", 0, limit)
if #ids > 0 then
  bulk("HDEL", KEYS[3], ids)
  bulk("ZREM", KEYS[1], ids)
end
-- Bounded by the limit, so a backlog (millions after a busy hour without
-- Cleanup) never goes in one blocking call; callers loop while a full limit
-- comes back.
local n = #ids
if n < limit then
  local due = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ARGV[3], "LIMIT", 0, limit - n)
  if #due > 0 then
    bulk("HDEL", KEYS[3], due)
    -- The lowest ranks are the earliest expiries, the ones just read.
    redis.call("ZREMRANGEBYRANK", KEYS[2], 0, itoa(#due - 1))
    n = n + #due
  end
end
-- A lock taken again got a later expiry (or left this set), so every
-- member due here has expired. Enqueue checks the expiry itself: this only
-- frees the memory.
local gone = redis.call("ZRANGEBYSCORE", KEYS[5], "-inf", ARGV[3], "LIMIT", 0, limit)
if #gone > 0 then
  bulk("HDEL", KEYS[4], gone)
  bulk("ZREM", KEYS[5], gone)
end
return n
`

const luaWorkerHeartbeat = `-- WorkerHeartbeat: register or refresh a worker.
-- KEYS[1] -> P:workers:{w}
-- KEYS[2] -> P:workers:{w}:info
-- KEYS[3] -> P:workers:{w}:drain
-- ARGV[1] -> worker id
-- ARGV[2] -> expiry, ms
-- ARGV[3] -> WorkerInfo JSON
-- ARGV[4] -> ms: workers expired before it are collected
-- Returns 1 when a drain was requested.
` + luaLib + `
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
redis.call("HSET", KEYS[2], ARGV[1], ARGV[3])
-- Workers that expired long ago and that nobody listed since (WorkerList
-- drops them too): a few per beat, so the hashes cannot grow for ever.
local old = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", "(" .. ARGV[4], "LIMIT", 0, 10)
if #old > 0 then
  redis.call("HDEL", KEYS[2], unpack(old))
  redis.call("HDEL", KEYS[3], unpack(old))
  redis.call("ZREM", KEYS[1], unpack(old))
end
return redis.call("HEXISTS", KEYS[3], ARGV[1])
`

const luaWorkerList = `-- WorkerList: drop expired workers, return the live ones.
-- KEYS[1] -> P:workers:{w}
-- KEYS[2] -> P:workers:{w}:info
-- KEYS[3] -> P:workers:{w}:drain
-- ARGV[1] -> now, ms
-- Returns the WorkerInfo JSON of live workers.
` + luaLib + `
local gone = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])
if #gone > 0 then
  bulk("HDEL", KEYS[2], gone)
  bulk("HDEL", KEYS[3], gone)
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])
end
local live = redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. ARGV[1], "+inf")
local out = {}
for i = 1, #live, 1000 do
  local j = math.min(i + 999, #live)
  local infos = redis.call("HMGET", KEYS[2], unpack(live, i, j))
  for n = 1, j - i + 1 do
    if infos[n] then out[#out + 1] = infos[n] end
  end
end
return out
`

const luaWorkerDeregister = `-- WorkerDeregister: remove a worker.
-- KEYS[1] -> P:workers:{w}
-- KEYS[2] -> P:workers:{w}:info
-- KEYS[3] -> P:workers:{w}:drain
-- ARGV[1] -> worker id
` + luaLib + `
redis.call("ZREM", KEYS[1], ARGV[1])
redis.call("HDEL", KEYS[2], ARGV[1])
redis.call("HDEL", KEYS[3], ARGV[1])
return 0
`

const luaWorkerDrain = `-- WorkerRequestDrain: flag a live worker to drain and notify it.
-- KEYS[1] -> P:workers:{w}
-- KEYS[2] -> P:workers:{w}:drain
-- ARGV[1] -> worker id
-- ARGV[2] -> now, ms
-- ARGV[3] -> control channel P:ch:ctl
-- ARGV[4] -> drain message (JSON) for the control channel
-- Returns 1, or 0 when no live worker has that id.
` + luaLib + `
local exp = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not exp or tonumber(exp) <= tonumber(ARGV[2]) then return 0 end
redis.call("HSET", KEYS[2], ARGV[1], "1")
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
