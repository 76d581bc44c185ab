// Package ebbredis is ebb's Redis broker driver.
//
// Create it with Open (from a redis://, rediss:// or redis+cluster:// URL,
// see URLOptions; the driver owns the client) or New (around a client you
// keep owning). It works with a single Redis, Sentinel and Redis Cluster:
// every key of a queue carries the queue name as its hash tag, and every
// script touches the keys of one queue only. The conformance suite runs on a
// real cluster too.
//
// # Durable enqueue
//
// Redis replication is asynchronous: an enqueue acknowledged just before its
// master dies may be missing on the replica that takes over. With
// Config.WaitReplicas (URL wait_replicas) Enqueue sends WAIT after its
// script, on the same connection to the same master, and acknowledges only
// what enough replicas confirmed (else ErrNotReplicated).
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
//	P:{q}:done         ZSET   Succeeded and Cancelled tasks kept for their
//	                          retention; score expiry µs (FinishedAt+Retention,
//	                          rounded up to the millisecond), so Cleanup drops
//	                          the expired ones from the low end
//	P:{q}:stats        HASH   running totals: enqueued, succeeded, failed,
//	                          retried; and "since" (ns), which tells the driver
//	                          the queue's keys were just created (see P:queues)
//	P:{q}:waiters      HASH   task id → number of TaskAwait calls waiting for it;
//	                          an ending task with an entry publishes on P:ch:done
//	P:{q}:u:<key>      STRING unique lock: the id of the task holding UniqueKey;
//	                          PX UniqueTTL when UniqueTTL > 0, else deleted when
//	                          the holder reaches Succeeded, Dead or Cancelled;
//	                          deleted either way when the holder is cancelled
//	                          before it ran (TaskCancel)
//	P:queues           SET    names of queues that ever received a task
//	P:workers:{w}      ZSET   live workers; score expiry ms
//	P:worker:{w}:<id>  STRING a worker's WorkerInfo as JSON (PX TTL+10m as a
//	                          garbage-collection backstop; liveness is the ZSET)
//	P:drain:{w}:<id>   STRING "1" while a drain was requested for that worker
//	P:leader:{ctl}:<name>       HASH   elected leader: id, term, exp (µs); never
//	                                   expires, so terms never repeat
//	P:decisions:{ctl}:seq       STRING last decision Seq (INCR)
//	P:decisions:{ctl}:data      HASH   Seq → decision JSON
//	P:decisions:{ctl}:all       ZSET   Seqs of all pools
//	P:decisions:{ctl}:pool:<p>  ZSET   Seqs of pool p, trimmed to DecisionLogMax
//	P:schedules:{ctl}:names     ZSET   names of beat's schedules, all scored 0 so
//	                                   ZRANGE lists them in name (byte) order
//	P:schedules:{ctl}:s:<name>  HASH   one schedule: def (the definition as
//	                                   JSON, written and read by Go only),
//	                                   created (ns), paused ("1"), tick (last
//	                                   tick fired, ns) and task (its task id);
//	                                   the scripts own all but def, which
//	                                   cjson could not rewrite losslessly
//
// A queue's keys all start with "P:{", other keys never do, so no queue name
// (even "w" or "queues") can collide with a global key; the prefix itself must
// not contain braces. Global keys of one kind share a hash tag ({w}, {ctl}) so
// their scripts run on one slot too.
//
// Task hash fields: msg is the immutable part of the task, one compact JSON
// object written by Go at enqueue and decoded only by Go:
//
//	{"id","k":kind,"q":queue,"a":args,"h":headers,"p":priority,"m":max attempts,
//	 "to":timeout ns,"r":retention ns,"u":unique key,"ut":unique TTL ns,
//	 "e":enqueued at ns}
//
// The other fields are small and are what the scripts read and write:
//
//	st   state name
//	a    attempts started
//	run  RunAt, ns
//	k    immutable facts the scripts need, packed so the hot path reads one
//	     field: <unique flag><priority><retention ms>, flag "-" (no unique
//	     key), "u" (held until the task ends) or "x" (has its own TTL)
//	max  max attempts (read by lease rescue only)
//	u    the unique key, when there is one
//	ls   the latest claim: "<lease token>\n<k>\n<lease expiry ns>\n<started
//	     ns>\n<worker id>"; the token is cut off (ls then starts with "\n")
//	     whenever the task stops running, so checking that ls starts with the
//	     caller's token is the whole fence, and a Complete reads one field
//	fa   finished, ns
//	cx   "1": cancellation requested while running
//	err  error history, a JSON array appended to by string surgery
//	res  result JSON
//
// Succeeded and Cancelled tasks get PEXPIRE Retention so their results expire
// natively, and enter P:{q}:done in the same script so TaskList can find them
// without a scan of the keyspace; Cleanup drops the set's members whose
// expiry passed (until then TaskList skips the ids whose hash is gone). Dead
// tasks stay in P:{q}:dead until Cleanup trims them. A task with no
// retention is deleted when it finishes and never enters P:{q}:done.
//
// Every stored task is thus a member of exactly one of its queue's sets,
// which is what TaskList walks: queue by queue in name order, and within a
// queue leases, ready:1…3, scheduled, dead, done, each from the highest
// score down. Its cursor is the queue, the set and a ZREVRANGE offset, so
// tasks entering or leaving a set ahead of the cursor shift it: under
// concurrent changes a task may be listed twice or skipped.
//
// # Finding a task by id
//
// TaskGet, TaskAwait, TaskCancel, TaskRetry and TaskDelete get only an id,
// and a task's key contains its queue. The driver pipelines HGETALL of
// P:{q}:t:<id> over the known queues: the first round trip carries SMEMBERS
// P:queues and the HGETALLs for the queues this Driver has seen, a second
// (only if needed) those for the queues it learnt from P:queues. That costs
// one command per queue, fine for the tens of queues ebb deployments have.
// Lookups by id always read P:queues, so they find tasks in queues created a
// moment ago by anyone.
//
// # Queue stats
//
// QueueStats runs one read-only script per queue (all counts of the queue in
// one reply), pipelined. The queue names come from a copy of P:queues the
// Driver keeps for up to 30 s: queues this Driver enqueues into, finds a task
// in, or hears a notification about (a Listen of all queues, as the control
// plane's, hears every queue with new work) join it at once; any other queue
// new to Redis shows up in QueueStats within 30 s. After Redis lost its data
// (FLUSHDB, restart without persistence) the copy may list vanished queues,
// with zero counts, until it is next read.
//
// # Notifications (pub/sub)
//
//	P:ch:q:<q>   PUBLISH "" when tasks became Queued in q (Enqueue, promotion,
//	             retry, hand-back, rescue, dead retry, TaskRetry); Listen
//	             with no queues uses PSUBSCRIBE P:ch:q:*
//	P:ch:ctl     control messages as JSON: cancel requests (to every listener)
//	             and drain requests (to the listener of that worker)
//	P:ch:done    task id, published only when a task someone awaits (an entry
//	             in P:{q}:waiters) reaches a terminal state or is deleted
//	             (TaskDelete); one subscription per Driver serves all its
//	             TaskAwait calls, so awaiting costs no connection per call and
//	             nothing at all when nobody waits
//
// # Scripts
//
// Every mutation of a queue is one Lua script (EVALSHA, falling back to EVAL
// after a script cache flush or a Redis restart) over that queue's keys;
// scripts build task keys from the queue's key prefix, which is in the same
// slot. Batches spanning queues are grouped by queue and pipelined.
package ebbredis
