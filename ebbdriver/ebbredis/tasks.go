package ebbredis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// findTask locates a task by id alone (see "Finding a task by id" in
// doc.go): HGET of its field in every known queue's tasks hash, pipelined. Queues this
// Driver knows go in the first round trip together with SMEMBERS P:queues;
// the others, if any, in a second.
func (d *Driver) findTask(ctx context.Context, id string) (*queueKeys, string, error) {
	if id == "" {
		return nil, "", fmt.Errorf("ebbredis: empty task id: %w", ebbtype.ErrTaskNotFound)
	}
	var local []string
	d.known.Range(func(k, _ any) bool {
		local = append(local, k.(string))
		return true
	})
	slices.Sort(local)
	d.qset.mu.RLock()
	gen := d.qset.gen
	d.qset.mu.RUnlock()
	read := time.Now()
	pipe := d.rdb.Pipeline()
	members := pipe.SMembers(ctx, d.queuesKey())
	cmds := make([]*redis.StringCmd, len(local))
	for i, q := range local {
		cmds[i] = pipe.HGet(ctx, d.keys(q).tasks, id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", fmt.Errorf("ebbredis: look up task %q: %w", id, err)
	}
	for i, c := range cmds {
		if c.Err() == nil {
			return d.keys(local[i]), c.Val(), nil
		}
	}
	// A full read of P:queues: QueueStats's copy is as fresh as it.
	d.storeQueueSet(members.Val(), read, gen)
	var rest []string
	for _, q := range members.Val() {
		if _, found := slices.BinarySearch(local, q); !found {
			rest = append(rest, q)
		}
	}
	if len(rest) > 0 {
		slices.Sort(rest)
		pipe = d.rdb.Pipeline()
		cmds = cmds[:0]
		for _, q := range rest {
			cmds = append(cmds, pipe.HGet(ctx, d.keys(q).tasks, id))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, "", fmt.Errorf("ebbredis: look up task %q: %w", id, err)
		}
		for i, c := range cmds {
			if c.Err() == nil {
				return d.keys(rest[i]), c.Val(), nil
			}
		}
	}
	return nil, "", fmt.Errorf("ebbredis: task %q: %w", id, ebbtype.ErrTaskNotFound)
}

// TaskGet implements ebbdriver.Driver.
func (d *Driver) TaskGet(ctx context.Context, id string) (*ebbtype.TaskInfo, error) {
	k, s, err := d.findTask(ctx, id)
	if err != nil {
		return nil, err
	}
	return decodeRecord(k.name, id, s), nil
}

// awaitBackstop is how often TaskAwait re-reads the task in case a wake-up
// was lost (pub/sub is at-most-once, e.g. across a reconnect).
const awaitBackstop = 3 * time.Second

// TaskAwait implements ebbdriver.Driver. The caller's wait is counted in
// P:{q}:waiters atomically with a state check, so the script that ends the
// task publishes the id on P:ch:done exactly when someone waits; this
// Driver's single subscription to that channel wakes the local waiters.
func (d *Driver) TaskAwait(ctx context.Context, id string) (*ebbtype.TaskInfo, error) {
	k, s, err := d.findTask(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec := decodeRecord(k.name, id, s); rec.State.Terminal() {
		return rec, nil
	}
	// Subscribe before marking, so the wake-up cannot slip in between.
	w, err := d.hub.add(ctx, id)
	if err != nil {
		return nil, err
	}
	defer d.hub.remove(id, w)
	s, err = d.run(ctx, scriptAwaitMark, []string{k.tasks, k.waiters}, id).Text()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("ebbredis: await task %q: %w", id, ebbtype.ErrTaskNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("ebbredis: await task %q: %w", id, err)
	}
	if rec := decodeRecord(k.name, id, s); rec.State.Terminal() {
		return rec, nil
	}
	defer func() {
		// Even when ctx is done: a stale count only costs a publish per end.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = d.run(uctx, scriptAwaitUnmark, []string{k.waiters}, id).Err()
	}()
	t := time.NewTicker(awaitBackstop)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ebbredis: await task %q: %w", id, ctx.Err())
		case <-d.hub.done:
			return nil, fmt.Errorf("ebbredis: await task %q: the driver was closed", id)
		case <-w.ch:
		case <-t.C:
		}
		s, err := d.rdb.HGet(ctx, k.tasks, id).Result()
		if errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("ebbredis: await task %q: %w", id, ebbtype.ErrTaskNotFound)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("ebbredis: await task %q: %w", id, ctx.Err())
			}
			continue // Redis away: keep waiting, the backstop retries
		}
		if rec := decodeRecord(k.name, id, s); rec.State.Terminal() {
			return rec, nil
		}
	}
}

type ctlMessage struct {
	Kind   string `json:"k"` // "cancel" or "drain"
	Queue  string `json:"q,omitempty"`
	TaskID string `json:"id,omitempty"`
	Worker string `json:"w,omitempty"`
}

// TaskCancel implements ebbdriver.Driver.
func (d *Driver) TaskCancel(ctx context.Context, id string, now time.Time) (ebbtype.State, error) {
	k, _, err := d.findTask(ctx, id)
	if err != nil {
		return "", err
	}
	payload, _ := json.Marshal(ctlMessage{Kind: "cancel", Queue: k.name, TaskID: id})
	st, err := d.run(ctx, scriptCancel,
		[]string{k.tasks, k.ready[0], k.ready[1], k.ready[2], k.scheduled, k.waiters, k.done, k.uniq, k.uniqexp},
		id, nsString(now), d.chCtl, string(payload), d.chDone).Text()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("ebbredis: cancel task %q: %w", id, ebbtype.ErrTaskNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("ebbredis: cancel task %q: %w", id, err)
	}
	if st == "" {
		return "", fmt.Errorf("ebbredis: cancel task %q: its stored record cannot be read (TaskGet shows what is wrong); delete it with TaskDelete", id)
	}
	return ebbtype.State(st), nil
}

// DeadList implements ebbdriver.Driver. Limit ≤ 0 lists all.
func (d *Driver) DeadList(ctx context.Context, p ebbdriver.DeadListParams) ([]*ebbtype.TaskInfo, int64, error) {
	if err := checkQueue(p.Queue); err != nil {
		return nil, 0, fmt.Errorf("ebbredis: list dead tasks: %w", err)
	}
	k := d.keys(p.Queue)
	start := int64(max(p.Offset, 0))
	stop := int64(-1)
	if p.Limit > 0 {
		stop = start + int64(p.Limit) - 1
	}
	pipe := d.rdb.Pipeline()
	idsCmd := pipe.ZRevRange(ctx, k.dead, start, stop)
	total := pipe.ZCard(ctx, k.dead)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, fmt.Errorf("ebbredis: list dead tasks of queue %q: %w", p.Queue, err)
	}
	ids := idsCmd.Val()
	recs := make([]*ebbtype.TaskInfo, 0, len(ids))
	if len(ids) == 0 {
		return recs, total.Val(), nil
	}
	vals, err := d.rdb.HMGet(ctx, k.tasks, ids...).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("ebbredis: list dead tasks of queue %q: %w", p.Queue, err)
	}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			recs = append(recs, &ebbtype.TaskInfo{ID: ids[i], Queue: p.Queue, State: ebbtype.StateDead,
				Malformed: "the dead-task index lists this task but its data is gone"})
			continue
		}
		recs = append(recs, decodeRecord(p.Queue, ids[i], s))
	}
	return recs, total.Val(), nil
}

// DeadRetry implements ebbdriver.Driver.
func (d *Driver) DeadRetry(ctx context.Context, p ebbdriver.DeadParams) (int64, error) {
	if err := checkQueue(p.Queue); err != nil {
		return 0, fmt.Errorf("ebbredis: retry dead tasks: %w", err)
	}
	k := d.keys(p.Queue)
	n, err := d.deadBatches(ctx, p.IDs, func(ids []string) *redis.Cmd {
		args := append(make([]any, 0, 3+len(ids)), nsString(p.Now), k.channel, maxPerCall)
		for _, id := range ids {
			args = append(args, id)
		}
		return d.run(ctx, scriptDeadRetry, k.kDeadMove, args...)
	})
	if err != nil {
		return n, fmt.Errorf("ebbredis: retry dead tasks of queue %q: %w", p.Queue, err)
	}
	return n, nil
}

// DeadPurge implements ebbdriver.Driver.
func (d *Driver) DeadPurge(ctx context.Context, p ebbdriver.DeadParams) (int64, error) {
	if err := checkQueue(p.Queue); err != nil {
		return 0, fmt.Errorf("ebbredis: purge dead tasks: %w", err)
	}
	k := d.keys(p.Queue)
	n, err := d.deadBatches(ctx, p.IDs, func(ids []string) *redis.Cmd {
		args := append(make([]any, 0, 1+len(ids)), maxPerCall)
		for _, id := range ids {
			args = append(args, id)
		}
		return d.run(ctx, scriptDeadPurge, []string{k.dead, k.tasks}, args...)
	})
	if err != nil {
		return n, fmt.Errorf("ebbredis: purge dead tasks of queue %q: %w", p.Queue, err)
	}
	return n, nil
}

// deadBatches runs a dead-set script over ids in chunks, or, with no ids,
// over the whole set a chunk at a time until a chunk comes back short. Each
// script answers {done, ids it took off the dead list}.
func (d *Driver) deadBatches(ctx context.Context, ids []string, run func([]string) *redis.Cmd) (int64, error) {
	var total int64
	step := func(chunk []string) (int64, error) {
		vals, err := run(chunk).Int64Slice()
		if err != nil {
			return 0, err
		}
		if len(vals) != 2 {
			return 0, fmt.Errorf("unexpected script answer %v", vals)
		}
		total += vals[0]
		return vals[1], nil
	}
	if len(ids) > 0 {
		for chunk := range slices.Chunk(ids, maxPerCall) {
			if _, err := step(chunk); err != nil {
				return total, err
			}
		}
		return total, nil
	}
	for {
		seen, err := step(nil)
		if err != nil {
			return total, err
		}
		if seen < maxPerCall {
			return total, nil
		}
	}
}

// Cleanup implements ebbdriver.Driver: it deletes the dead tasks that died
// before Now-DeadRetention and the finished ones whose retention ended (by
// P:{q}:done), at most Limit together, and drops up to Limit expired
// unique locks. Limit ≤ 0 means 1000.
func (d *Driver) Cleanup(ctx context.Context, p ebbdriver.CleanupParams) (int64, error) {
	if err := checkQueue(p.Queue); err != nil {
		return 0, fmt.Errorf("ebbredis: clean up: %w", err)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = maxPerCall
	}
	k := d.keys(p.Queue)
	n, err := d.run(ctx, scriptCleanup, []string{k.dead, k.done, k.tasks, k.uniq, k.uniqexp},
		usString(p.Now.Add(-p.DeadRetention)), limit, usString(p.Now)).Int64()
	if err != nil {
		return 0, fmt.Errorf("ebbredis: clean up dead tasks of queue %q: %w", p.Queue, err)
	}
	return n, nil
}

// QueueStats implements ebbdriver.Driver: one script call per queue that
// reads every count of the queue (scriptQueueStats), all queues in one
// pipeline. The queue names come from the Driver's copy of P:queues (see
// queueSetTTL): a queue first used by another process may be missing for up
// to 30 s, unless this Driver enqueued into it or one of its listeners heard
// of it.
func (d *Driver) QueueStats(ctx context.Context, now time.Time) ([]ebbtype.QueueStats, error) {
	names, err := d.queueList(ctx)
	if err != nil {
		return nil, fmt.Errorf("ebbredis: queue stats: list queues: %w", err)
	}
	if len(names) == 0 {
		return []ebbtype.QueueStats{}, nil
	}
	nowUS := usString(now)
	calls := make([]*call, len(names))
	for i, q := range names {
		calls[i] = &call{s: scriptQueueStats, keys: d.keys(q).kStats, args: []any{nowUS}}
	}
	if err := d.runPipelined(ctx, calls, nil); err != nil {
		return nil, fmt.Errorf("ebbredis: queue stats: %w", err)
	}
	out := make([]ebbtype.QueueStats, len(names))
	for i, q := range names {
		v, err := calls[i].cmd.Slice()
		if err != nil || len(v) != 11 {
			return nil, fmt.Errorf("ebbredis: queue stats of %q: unexpected script answer %v: %v", q, v, err)
		}
		out[i] = ebbtype.QueueStats{
			Name: q, Queued: toInt(v[0]), OldestQueuedAt: scoreTime(v[1]),
			Scheduled: toInt(v[2]), DueScheduled: toInt(v[3]), NextDueAt: scoreTime(v[4]),
			InFlight: toInt(v[5]), Dead: toInt(v[6]),
			Enqueued: toInt(v[7]), Succeeded: toInt(v[8]), Failed: toInt(v[9]), Retried: toInt(v[10]),
		}
	}
	return out, nil
}

// scoreTime is a sorted-set score in µs as the scripts return it (a string,
// "" for none).
func scoreTime(v any) time.Time {
	s, _ := v.(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || s == "" {
		return time.Time{}
	}
	return fromUS(f)
}

func toInt(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}
