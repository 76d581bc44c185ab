package ebbredis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/internal/groupcommit"
	"github.com/ebbq/ebb/ebbtype"
)

// maxPerCall bounds the tasks one script call handles, so a huge batch does
// not block Redis for long; the calls of one batch still share one pipeline.
const maxPerCall = 1000

// Enqueue implements ebbdriver.Driver: one script call per queue (per 1000
// tasks), all in one pipeline. Small batches share their script call with
// concurrent calls (see enqueueCall).
func (d *Driver) Enqueue(ctx context.Context, tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
	if len(tasks) > enqueueGroupTasks {
		return d.enqueue(ctx, tasks)
	}
	c := &enqueueCall{Tasks: tasks}
	if err := d.enqueueGroup.Do(ctx, c); err != nil {
		return nil, fmt.Errorf("ebbredis: enqueue: %w", err)
	}
	return c.Results, c.Err
}

// Group commit for small enqueues. Most of a single-task enqueue is the
// round trip: a Redis server spends more of its CPU reading, dispatching
// and answering one script call than running it, and a producer waits a
// whole round trip for it. Calls arriving while one is in flight go out
// together as one script call per queue, the way rueidis pipelines
// concurrent commands automatically. Batches larger than
// enqueueGroupTasks amortise their round trip already and go alone.
const (
	enqueueGroupTasks = 16
	enqueueGroupCalls = maxPerCall / enqueueGroupTasks
)

type enqueueCall = groupcommit.Call[*ebbtype.TaskInfo, ebbdriver.EnqueueResult]

// commitEnqueues stores the calls of batch together. A call holding a task
// the driver refuses (badTaskError) fails alone; any other failure (Redis
// unreachable, a script error) is everyone's.
func (d *Driver) commitEnqueues(ctx context.Context, batch []*enqueueCall) {
	groupcommit.Merged(batch, func(tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
		return d.enqueue(ctx, tasks)
	}, func(err error) bool {
		var bad *badTaskError
		return errors.As(err, &bad)
	})
}

// badTaskError marks an enqueue error caused by a task of the batch, not by
// Redis.
type badTaskError struct{ err error }

func (e *badTaskError) Error() string { return e.err.Error() }
func (e *badTaskError) Unwrap() error { return e.err }

func badTask(format string, args ...any) error {
	return &badTaskError{fmt.Errorf(format, args...)}
}

// enqueue stores tasks: one script call per queue (per 1000 tasks), all
// in one pipeline.
func (d *Driver) enqueue(ctx context.Context, tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
	results := make([]ebbdriver.EnqueueResult, len(tasks))
	if len(tasks) == 0 {
		return results, nil
	}
	wall := time.Now()
	now := nsString(wall)

	type group struct {
		k     *queueKeys
		calls []*call
		idx   [][]int // task indexes per call
	}
	var groups []*group
	byQueue := make(map[string]*group, 1)
	var msg, rec []byte
	for i, t := range tasks {
		if t == nil {
			return nil, badTask("ebbredis: enqueue: task %d of the batch is nil", i)
		}
		if err := checkQueue(t.Queue); err != nil {
			return nil, badTask("ebbredis: enqueue task %q: %w", t.ID, err)
		}
		if t.ID == "" {
			return nil, badTask("ebbredis: enqueue: task %d of the batch (kind %q) has no ID; the client must set one", i, t.Kind)
		}
		g := byQueue[t.Queue]
		if g == nil {
			g = &group{k: d.keys(t.Queue)}
			byQueue[t.Queue] = g
			groups = append(groups, g)
		}
		if len(g.calls) == 0 || len(g.idx[len(g.idx)-1]) == maxPerCall {
			c := &call{s: scriptEnqueue, keys: g.k.kEnqueue,
				args: append(make([]any, 0, 2+6*min(len(tasks), maxPerCall)), g.k.channel, now)}
			g.calls = append(g.calls, c)
			g.idx = append(g.idx, nil)
		}
		c := g.calls[len(g.calls)-1]
		var err error
		msg, err = appendMsg(msg[:0], t)
		if err != nil {
			return nil, badTask("ebbredis: enqueue task %q: %w", t.ID, err)
		}
		prio := t.Priority
		if prio == 0 {
			prio = ebbtype.PriorityNormal
		}
		if prio < ebbtype.PriorityHigh || prio > ebbtype.PriorityLow {
			return nil, badTask("ebbredis: enqueue task %q: priority %d is out of range %d..%d", t.ID, t.Priority, ebbtype.PriorityHigh, ebbtype.PriorityLow)
		}
		enqueuedAt := t.EnqueuedAt
		if enqueuedAt.IsZero() {
			enqueuedAt = wall
		}
		runAt := t.RunAt
		if runAt.IsZero() {
			runAt = enqueuedAt
		}
		st, set := "queued", int(prio)
		if runAt.After(enqueuedAt) {
			st, set = "scheduled", 4
		}
		// k: what the scripts need of the task, see scripts.go.
		uflag := "-"
		lockExp := "0"
		switch {
		case t.UniqueKey != "" && t.UniqueTTL > 0:
			uflag = "x"
			// On the enqueuer's clock, as the Enqueue that checks it.
			lockExp = usString(wall.Add(time.Duration(ceilMS(t.UniqueTTL)) * time.Millisecond))
		case t.UniqueKey != "":
			uflag = "u"
		}
		k := uflag + strconv.Itoa(int(prio)) + strconv.FormatInt(ceilMS(t.Retention), 10)
		runNS := nsString(runAt)
		rec = appendRecord(rec[:0], st, runNS, k, max(t.MaxAttempts, 1), t.UniqueKey, msg)
		if len(tasks) == 1 && t.UniqueKey == "" {
			// The call most producers make has its own script: Redis
			// copies every KEYS and ARGV entry into Lua, and the general
			// script's sixteen cost more than its commands.
			wake := g.k.channel
			if set == 4 {
				wake = "" // a scheduled task: nobody to wake yet
			}
			c.s, c.keys, c.args = scriptEnqueueOne, g.k.kOne[set-1], append(c.args[:0], t.ID, string(rec), usString(runAt), wake)
		} else {
			c.args = append(c.args, t.ID, string(rec), set, usString(runAt), t.UniqueKey, lockExp)
		}
		g.idx[len(g.idx)-1] = append(g.idx[len(g.idx)-1], i)
	}

	var calls []*call
	var newQueues []any
	for _, g := range groups {
		calls = append(calls, g.calls...)
		if !d.knownQueue(g.k.name) {
			newQueues = append(newQueues, g.k.name)
		}
	}
	var sadd *redis.IntCmd
	var err error
	if d.waitReplicas > 0 {
		if len(newQueues) > 0 {
			sadd = d.rdb.SAdd(ctx, d.queuesKey(), newQueues...)
		}
		err = d.runReplicated(ctx, calls)
	} else if len(calls) == 1 && len(newQueues) == 0 {
		// The common case, one script call: a pipeline of one costs a
		// producer more than the command itself.
		c := calls[0]
		c.cmd = d.run(ctx, c.s, c.keys, c.args...)
		err = c.cmd.Err()
	} else {
		err = d.runPipelined(ctx, calls, func(p redis.Pipeliner) {
			if len(newQueues) > 0 {
				sadd = p.SAdd(ctx, d.queuesKey(), newQueues...)
			}
		})
	}
	if err != nil {
		return nil, fmt.Errorf("ebbredis: enqueue: %w", err)
	}
	if sadd != nil {
		if err := sadd.Err(); err != nil {
			return nil, fmt.Errorf("ebbredis: enqueue: register queues: %w", err)
		}
		for _, q := range newQueues {
			d.known.Store(q, struct{}{})
		}
	}
	// A queue whose stats hash was just created is new to this Redis: when
	// this Driver had already registered it, Redis lost its data (restart
	// without persistence, FLUSHDB), so register it again.
	var again []any
	for _, g := range groups {
		for ci, c := range g.calls {
			created, err := enqueueAnswer(c, tasks, g.idx[ci], results)
			if err != nil {
				return nil, err
			}
			if created && !contains(newQueues, g.k.name) {
				again = append(again, g.k.name)
			}
		}
	}
	if len(again) > 0 {
		if err := d.rdb.SAdd(ctx, d.queuesKey(), again...).Err(); err != nil {
			return nil, fmt.Errorf("ebbredis: enqueue: register queues: %w", err)
		}
	}
	// QueueStats of this Driver lists the queues at once.
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.k.name
	}
	d.addQueues(names...)
	return results, nil
}

// enqueueAnswer reads the reply of an enqueue call holding tasks[idx...]
// into results, and whether the queue is new to this Redis (its stats hash
// had counted nothing).
func enqueueAnswer(c *call, tasks []*ebbtype.TaskInfo, idx []int, results []ebbdriver.EnqueueResult) (created bool, err error) {
	// held is "" for a task stored, else the id of the task in its place.
	answer := func(ti int, held string) {
		if held == "" {
			results[ti] = ebbdriver.EnqueueResult{ID: tasks[ti].ID}
		} else {
			results[ti] = ebbdriver.EnqueueResult{ID: held, Duplicate: true}
		}
	}
	if c.s == scriptEnqueueOne && len(idx) == 1 {
		switch v := c.cmd.Val().(type) {
		case int64:
			answer(idx[0], "")
			return v == 1, nil
		case string:
			answer(idx[0], v)
			return false, nil
		}
		return false, fmt.Errorf("ebbredis: enqueue: unexpected script answer %v: %v", c.cmd.Val(), c.cmd.Err())
	}
	vals, err := c.cmd.Slice()
	if err != nil || len(vals) != len(idx)+1 {
		return false, fmt.Errorf("ebbredis: enqueue: unexpected script answer %v: %v", vals, err)
	}
	for j, ti := range idx {
		held, _ := vals[j+1].(string)
		answer(ti, held)
	}
	flag, _ := vals[0].(int64)
	return flag == 1, nil
}

func contains(xs []any, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
