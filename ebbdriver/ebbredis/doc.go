// Package ebbredis is ebb's Redis broker driver.
//
// Create it with Open (from a redis:// or rediss:// URL; the driver owns the
// client) or New (around a client you keep owning). It works with a single
// Redis, Sentinel and Redis Cluster: every key of a queue carries the queue
// name as its hash tag, and every script touches the keys of one queue only.
//
// # Key layout
//
// P is Config.Prefix ("ebb" by default), q a queue name. All times are Unix
// times; "µs" marks sorted-set scores in microseconds (exact in a float64
// until the year 2255, and fine enough to keep sub-millisecond RunAt order),
// "ns" marks values only Go reads, kept in nanoseconds so records round-trip
// time.Time exactly.
//
//	P:{q}:t:<id>       HASH   one task (fields below)
//	P:{q}:ready:<p>    ZSET   Queued tasks of priority p (1, 2, 3); score RunAt µs,
//	                          so ZRANGE 0 0 gives the next task and the oldest age,
//	                          and equal scores fall back to the id (member order)
//	P:{q}:scheduled    ZSET   Scheduled and Retrying tasks; score RunAt µs
//	P:{q}:leases       ZSET   Running tasks; score lease expiry µs
//	P:{q}:dead         ZSET   Dead tasks; score time of death µs
//	P:{q}:stats        HASH   running totals: succeeded, failed, retried; and
//	                          "since" (ns), which tells the driver the queue's
//	                          keys were just created (see P:queues)
//	P:{q}:u:<key>      STRING unique lock: the id of the task holding UniqueKey
//	                          (PX UniqueTTL when UniqueTTL > 0; else deleted when
//	                          the holder reaches Succeeded, Dead or Cancelled)
//	P:queues           SET    names of queues that ever received a task
//	P:workers:{w}      ZSET   live workers; score expiry ms
//	P:worker:{w}:<id>  STRING a worker's WorkerInfo as JSON (PX TTL+10m as a
//	                          garbage-collection backstop; liveness is the ZSET)
//	P:drain:{w}:<id>   STRING "1" while a drain was requested for that worker
//
// A queue's keys all start with "P:{", other keys never do, so no queue name
// (even "w" or "queues") can collide with a global key; the prefix itself must
// not contain braces.
//
// Task hash fields: msg is the immutable part of the task, one compact JSON
// object written by Go at enqueue and decoded only by Go:
//
//	{"id","k":kind,"q":queue,"a":args,"h":headers,"p":priority,"m":max attempts,
//	 "to":timeout ns,"r":retention ns,"u":unique key,"ut":unique TTL ns,
//	 "e":enqueued at ns}
//
// The small mutable fields are what the scripts need without decoding msg:
// st (state name), a (attempt), p (priority), max (max attempts), ret
// (retention ms), u (unique key held until the task ends: UniqueTTL 0) or ux
// (unique key with a TTL: released early only by TaskCancel before it ran),
// run (RunAt ns), tok (lease token), w (worker id), sa (started ns), fa
// (finished ns), le (lease expiry ns), cx ("1": cancel requested), err (error
// history: a JSON array, appended by string surgery), res (result JSON) and wt
// (number of TaskAwait callers waiting).
//
// Succeeded and Cancelled tasks get PEXPIRE Retention so their results expire
// natively; Dead tasks stay in P:{q}:dead until Cleanup trims them.
//
// # Finding a task by id
//
// TaskGet, TaskAwait and TaskCancel get only an id, and a task's key contains
// its queue. The driver pipelines HGETALL of P:{q}:t:<id> over the queues in
// P:queues (one round trip, plus one for SMEMBERS; queues this Driver already
// knows are tried in the first round trip). That costs one command per queue,
// fine for the tens of queues ebb deployments have.
//
// # Notifications (pub/sub)
//
//	P:ch:q:<q>   PUBLISH "" when tasks became Queued in q (Enqueue, promotion,
//	             retry, hand-back, rescue, dead retry); Listen with no queues
//	             uses PSUBSCRIBE P:ch:q:*
//	P:ch:ctl     control messages as JSON: cancel requests (to every listener)
//	             and drain requests (to the listener of that worker)
//	P:ch:done    task id, published only when a task with waiters (wt > 0)
//	             reaches a terminal state; one subscription per Driver serves
//	             all its TaskAwait calls, so awaiting costs no connection per
//	             call and nothing at all when nobody waits
//
// # Scripts
//
// Every mutation of a queue is one Lua script (EVALSHA, falling back to EVAL
// after a script cache flush or a Redis restart) over that queue's keys;
// scripts build task keys from the queue's key prefix, which is in the same
// slot. Batches spanning queues are grouped by queue and pipelined.
package ebbredis
