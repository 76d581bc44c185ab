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
//	P:{q}:tasks        HASH   task id → the task's record (below)
//	P:{q}:ready:<p>    ZSET   Queued tasks of priority p (1, 2, 3); score RunAt µs,
//	                          so ZRANGE 0 0 gives the next task and the oldest age,
//	                          and equal scores fall back to the id (member order)
//	P:{q}:scheduled    ZSET   Scheduled and Retrying tasks; score RunAt µs
//	P:{q}:leases       ZSET   Running tasks; score lease expiry µs
//	P:{q}:dead         ZSET   Dead tasks; score time of death µs
//	P:{q}:done         ZSET   Succeeded and Cancelled tasks kept for their
//	                          retention; score expiry µs (FinishedAt+Retention,
//	                          rounded up to the millisecond), so Cleanup deletes
//	                          the expired ones from the low end
//	P:{q}:stats        HASH   running totals: enqueued, succeeded, failed,
//	                          retried; an enqueue that finds no enqueued total
//	                          tells the driver the queue's keys were just
//	                          created (see P:queues)
//	P:{q}:waiters      HASH   task id → number of TaskAwait calls waiting for it;
//	                          an ending task with an entry publishes on P:ch:done
//	P:{q}:uniq         HASH   unique key → id of the task holding it; held until
//	                          the holder reaches Succeeded, Dead or Cancelled, or,
//	                          with UniqueTTL > 0, until its expiry in uniqexp;
//	                          released either way when the holder is cancelled
//	                          before it ran (TaskCancel). A key whose holder is
//	                          gone (deleted, past its retention) is free.
//	P:{q}:uniqexp      ZSET   unique keys with a TTL; score expiry µs on the
//	                          enqueuer's clock; Enqueue checks it, Cleanup drops
//	                          the expired ones from uniq
//	P:queues           SET    names of queues that ever received a task
//	P:workers:{w}      ZSET   live workers; score expiry ms
//	P:workers:{w}:info HASH   worker id → its WorkerInfo as JSON; dropped with
//	                          the worker's entry when WorkerList finds it
//	                          expired, or by a heartbeat 10 min after it expired
//	P:workers:{w}:drain HASH  worker id → "1" while a drain was requested
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
// No key is made per task or per unique key: a queue has the fixed set of
// keys above, so every script declares every key it touches (Redis calls
// anything else unsupported, and a cluster could not route it), and a task
// costs one hash field rather than a key of its own.
//
// A task's record is one string, read and rewritten whole by the scripts:
// a header line of space-separated fields, then variable-length parts
// whose lengths the header gives, then the immutable msg to the end:
//
//	<st> <a> <run> <k> <max> <fa> <cx> <lease> <started> <#tok> <#worker> <#u> <#err> <#res>\n
//	<tok><worker><u><err><res><msg>
//
//	st       state name
//	a        attempts started
//	run      RunAt, ns
//	k        immutable facts the scripts need, packed:
//	         <unique flag><priority><retention ms>, flag "-" (no unique
//	         key), "u" (held until the task ends) or "x" (has its own TTL)
//	max      max attempts
//	fa       finished, ns ("0": not finished)
//	cx       "1": cancellation requested while running
//	lease    the latest claim's lease expiry, ns
//	started  the latest claim's start, ns
//	tok      the latest claim's lease token, emptied whenever the task stops
//	         running, so "tok is the caller's token" is the whole fence
//	worker   the latest claim's worker id
//	u        the unique key, when there is one
//	err      error history, a JSON array appended to by string surgery
//	res      result JSON
//
// msg is one compact JSON object written by Go at enqueue and decoded only
// by Go:
//
//	{"id","k":kind,"q":queue,"a":args,"h":headers,"p":priority,"m":max attempts,
//	 "to":timeout ns,"r":retention ns,"u":unique key,"ut":unique TTL ns,
//	 "e":enqueued at ns}
//
// A record whose header cannot be read (damaged by hand) is claimed by the
// next fetch as a task whose msg is the whole old record: it is reported
// Malformed, and the worker dead-letters it with its bytes intact.
//
// Succeeded and Cancelled tasks with a retention enter P:{q}:done, scored
// by their expiry, in the script that finishes them; Cleanup (run by the
// leader's and the workers' maintenance, every minute by default) deletes
// the expired ones in bounded batches, so a finished task stays readable
// from the end of its retention until the next Cleanup. Dead tasks stay in
// P:{q}:dead until Cleanup deletes them past DeadRetention. A task with no
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
// and a task lives in its queue's hash. The driver pipelines HGET
// P:{q}:tasks <id> over the known queues: the first round trip carries SMEMBERS
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
//	P:ch:q:<q>   PUBLISH "" when tasks became Queued in q (promotion, retry,
//	             hand-back, rescue, dead retry, TaskRetry; Enqueue only when
//	             a ready set it adds to was empty, see luaEnqueueOne); Listen
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
// after a script cache flush or a Redis restart) over that queue's keys,
// all of them declared in KEYS; the package's tests run every script with
// a check that refuses any other key. Batches spanning queues are grouped
// by queue and pipelined.
package ebbredis
