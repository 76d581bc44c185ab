package ebbpostgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/groupcommit"
	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// promoteBatch bounds how many due tasks one Fetch promotes per queue.
const promoteBatch = 10000

// Enqueue stores the batch: one statement for tasks without a unique key,
// a transaction when some have one. Small batches without unique keys
// share their statement with concurrent calls (see enqueueCall).
func (d *Driver) Enqueue(ctx context.Context, tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
	if len(tasks) > enqueueGroupTasks || slices.ContainsFunc(tasks, func(t *ebbtype.TaskInfo) bool { return t != nil && t.UniqueKey != "" }) {
		res, err := d.enqueue(ctx, nil, tasks, false)
		if err != nil {
			return nil, d.wrap("enqueue", err)
		}
		return res, nil
	}
	c := &enqueueCall{Tasks: tasks}
	if err := d.enqueueGroup.Do(ctx, c); err != nil {
		return nil, d.wrap("enqueue", err)
	}
	if c.Err != nil {
		return nil, d.wrap("enqueue", c.Err)
	}
	return c.Results, nil
}

// Group commit for small enqueues. Every statement outside a caller's
// transaction commits on its own and waits for its WAL flush; concurrent
// producers on separate connections queue behind each other's flushes (the
// WALWrite lock) and cost the server a transaction each. Calls arriving
// while one is in flight go together in the next statement. Batches larger
// than enqueueGroupTasks already amortise their commit and go alone, so one
// statement stays small.
const (
	enqueueGroupTasks = 16
	enqueueGroupCalls = 256
	// enqueueGroupTimeout bounds a shared statement, which no single
	// caller's context may cancel.
	enqueueGroupTimeout = 30 * time.Second
)

type enqueueCall = groupcommit.Call[*ebbtype.TaskInfo, ebbdriver.EnqueueResult]

// commitEnqueues stores the calls of batch in one statement. A call whose
// task the server rejects, or the driver refuses, fails alone; any other
// failure (the connection, the server gone) is everyone's.
func (d *Driver) commitEnqueues(ctx context.Context, batch []*enqueueCall) {
	if len(batch) > 1 { // a lone call runs under its caller's context
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, enqueueGroupTimeout)
		defer cancel()
	}
	// A lone call notifies in its own statement: nothing else is committing
	// (the reason for the waker), and the listeners hear of the task one
	// transaction and one hop sooner, which is most of a lone task's wait.
	inline := len(batch) == 1
	groupcommit.Merged(batch, func(tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
		return d.enqueue(ctx, nil, tasks, inline)
	}, func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) || errors.Is(err, errBadInput)
	})
}

// taskArrays are a batch's columns, for unnest.
type taskArrays struct {
	id, queue, kind                         []string
	args, result                            [][]byte
	headers, uniqueKey, errors              []*string
	state                                   []string
	priority, attempt, maxAttempts          []int32
	runAt, timeout, retention, ttl, enqueue []int64
}

func (a *taskArrays) add(t *ebbtype.TaskInfo) error {
	h, err := jsonOrNil(t.Headers, len(t.Headers) == 0)
	if err != nil {
		return fmt.Errorf("task %s: encoding headers: %w", t.ID, err)
	}
	e, err := jsonOrNil(t.Errors, len(t.Errors) == 0)
	if err != nil {
		return fmt.Errorf("task %s: encoding errors: %w", t.ID, err)
	}
	state := ebbtype.StateQueued
	if t.RunAt.After(t.EnqueuedAt) {
		state = ebbtype.StateScheduled
	}
	a.id, a.queue, a.kind = append(a.id, t.ID), append(a.queue, t.Queue), append(a.kind, t.Kind)
	a.args, a.result = append(a.args, nilIfEmpty(t.EncodedArgs)), append(a.result, nilIfEmpty(t.Result))
	a.headers, a.uniqueKey, a.errors = append(a.headers, h), append(a.uniqueKey, nullStr(t.UniqueKey)), append(a.errors, e)
	a.state = append(a.state, string(state))
	a.priority, a.attempt, a.maxAttempts = append(a.priority, int32(t.Priority)), append(a.attempt, int32(t.Attempt)), append(a.maxAttempts, int32(t.MaxAttempts))
	a.runAt, a.timeout, a.retention = append(a.runAt, sqlcommon.NS(t.RunAt)), append(a.timeout, int64(t.Timeout)), append(a.retention, int64(t.Retention))
	a.ttl, a.enqueue = append(a.ttl, int64(t.UniqueTTL)), append(a.enqueue, sqlcommon.NS(t.EnqueuedAt))
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if b == nil {
		return nil
	}
	return b
}

func (a *taskArrays) params() []any {
	return []any{a.id, a.queue, a.kind, a.args, a.headers, a.priority, a.runAt, a.attempt, a.maxAttempts,
		a.timeout, a.retention, a.uniqueKey, a.ttl, a.state, a.enqueue, a.errors, a.result}
}

// enqueue stores tasks through q (a caller's transaction, whose commit
// notifies), or on the pool when q is nil: then the waker notifies after
// the statement, unless inline asks the statement to notify itself.
func (d *Driver) enqueue(ctx context.Context, q querier, tasks []*ebbtype.TaskInfo, inline bool) ([]ebbdriver.EnqueueResult, error) {
	results := make([]ebbdriver.EnqueueResult, len(tasks))
	if len(tasks) == 0 {
		return results, nil
	}
	unique := false
	for i, t := range tasks {
		if t == nil {
			return nil, fmt.Errorf("task %d is nil: %w", i, errBadInput)
		}
		if t.ID == "" || t.Queue == "" {
			return nil, fmt.Errorf("task %d (id %q, queue %q) lacks an ID or a Queue; the client must fill both in: %w", i, t.ID, t.Queue, errBadInput)
		}
		unique = unique || t.UniqueKey != ""
	}
	// channel set: the statements notify (inside q's transaction, or a lone
	// call's own); nil: the waker notifies once they committed.
	channel := &d.channel
	if q == nil && !inline {
		channel = nil
	}
	var woken []string
	if !unique {
		var a taskArrays
		for _, t := range tasks {
			if err := a.add(t); err != nil {
				return nil, err
			}
		}
		if q == nil {
			fresh, err := d.enqueueFresh(ctx, &a, len(tasks), channel)
			if err != nil {
				return nil, err
			}
			if fresh {
				for i, t := range tasks {
					results[i] = ebbdriver.EnqueueResult{ID: t.ID}
					if a.state[i] == string(ebbtype.StateQueued) && !slices.Contains(woken, t.Queue) {
						woken = append(woken, t.Queue)
					}
				}
				if channel == nil {
					d.waker.wake(woken)
				}
				return results, nil
			}
		}
		run := q
		if run == nil {
			run = pgxQuerier{d.pool}
		}
		stored := map[string]int{}
		err := each(ctx, run, d.s.enqueue, append(a.params(), shard(), channel)...)(func(r rowSet) error {
			var id string
			var n int64
			if err := r.Scan(&id, &n); err != nil {
				return err
			}
			stored[id]++
			return nil
		})
		if err != nil {
			return nil, err
		}
		for i, t := range tasks {
			results[i] = ebbdriver.EnqueueResult{ID: t.ID, Duplicate: stored[t.ID] == 0}
			if stored[t.ID] > 0 {
				stored[t.ID]-- // a second copy in the batch is its duplicate
				if a.state[i] == string(ebbtype.StateQueued) && !slices.Contains(woken, t.Queue) {
					woken = append(woken, t.Queue)
				}
			}
		}
	} else {
		run := func(q querier) error {
			var err error
			woken, err = d.enqueueOneByOne(ctx, q, tasks, results, channel)
			return err
		}
		var err error
		if q != nil {
			err = run(q)
		} else {
			err = d.inTx(ctx, func(tx pgx.Tx) error { return run(pgxQuerier{tx}) })
		}
		if err != nil {
			return nil, err
		}
	}
	if channel == nil {
		d.waker.wake(woken)
	}
	return results, nil
}

// enqueueFresh stores a batch on the pool on the assumption, true of
// nearly every batch, that none of its IDs is stored yet. false: one is (or
// the batch holds an ID twice), nothing was stored, and the caller stores
// the batch with the statement that sorts out duplicates.
func (d *Driver) enqueueFresh(ctx context.Context, a *taskArrays, n int, channel *string) (bool, error) {
	var stored, notified int64
	err := d.pool.QueryRow(ctx, d.s.enqueueFresh, append(a.params(), shard(), channel)...).Scan(&stored, &notified)
	var pe *pgconn.PgError // 23505: unique_violation
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "ebb_tasks_pkey" {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if stored != int64(n) {
		return false, fmt.Errorf("stored %d of a batch of %d tasks", stored, n)
	}
	return true, nil
}

// enqueueOneByOne stores tasks in order inside one transaction, so a
// unique key taken by an earlier task of the batch holds for a later one.
func (d *Driver) enqueueOneByOne(ctx context.Context, q querier, tasks []*ebbtype.TaskInfo, results []ebbdriver.EnqueueResult, channel *string) ([]string, error) {
	stored := map[string]int64{}
	woken := map[string]bool{}
	for i, t := range tasks {
		var a taskArrays
		if err := a.add(t); err != nil {
			return nil, err
		}
		inserted := false
		if err := each(ctx, q, d.s.insertOnly, a.params()...)(func(r rowSet) error {
			inserted = true
			var id string
			return r.Scan(&id)
		}); err != nil {
			return nil, fmt.Errorf("inserting task %s: %w", t.ID, err)
		}
		if !inserted {
			results[i] = ebbdriver.EnqueueResult{ID: t.ID, Duplicate: true}
			continue
		}
		if t.UniqueKey != "" {
			var exp *int64 // NULL: held until terminal
			if t.UniqueTTL > 0 {
				v := sqlcommon.NS(t.EnqueuedAt.Add(t.UniqueTTL))
				exp = &v
			}
			if err := each(ctx, q, d.s.lockKey, t.Queue, t.UniqueKey)(func(rowSet) error { return nil }); err != nil {
				return nil, fmt.Errorf("locking unique key %q: %w", t.UniqueKey, err)
			}
			taken := false
			if err := each(ctx, q, d.s.takeKey, t.Queue, t.UniqueKey, t.ID, exp, sqlcommon.NS(t.EnqueuedAt))(func(r rowSet) error {
				taken = true
				var id string
				return r.Scan(&id)
			}); err != nil {
				return nil, fmt.Errorf("taking unique key %q: %w", t.UniqueKey, err)
			}
			if !taken {
				var holder string
				if err := each(ctx, q, d.s.keyHolder, t.Queue, t.UniqueKey)(func(r rowSet) error {
					return r.Scan(&holder)
				}); err != nil {
					return nil, fmt.Errorf("reading unique key %q: %w", t.UniqueKey, err)
				}
				if err := each(ctx, q, d.s.dropTask, t.ID)(func(rowSet) error { return nil }); err != nil {
					return nil, fmt.Errorf("undoing task %s: %w", t.ID, err)
				}
				results[i] = ebbdriver.EnqueueResult{ID: holder, Duplicate: true}
				continue
			}
		}
		results[i] = ebbdriver.EnqueueResult{ID: t.ID}
		stored[t.Queue]++
		if a.state[0] == string(ebbtype.StateQueued) {
			woken[t.Queue] = true
		}
	}
	if len(stored) == 0 {
		return nil, nil
	}
	var queues, wake []string
	var counts []int64
	for qn, n := range stored {
		queues, counts = append(queues, qn), append(counts, n)
	}
	for qn := range woken {
		wake = append(wake, qn)
	}
	return wake, each(ctx, q, d.s.counted, queues, counts, wake, shard(), channel)(func(r rowSet) error {
		var n int64
		return r.Scan(&n)
	})
}

// Fetch promotes due tasks and claims up to Limit. One queue takes one
// round trip (promote, claim, next due time, pipelined in one implicit
// transaction); several take a transaction.
func (d *Driver) Fetch(ctx context.Context, p ebbdriver.FetchParams) (*ebbdriver.FetchResult, error) {
	res := &ebbdriver.FetchResult{}
	queues := sqlcommon.Dedup(p.Queues)
	if len(queues) == 0 {
		return res, nil
	}
	now, until := sqlcommon.NS(p.Now), sqlcommon.NS(p.Now.Add(p.LeaseDuration))
	var wake []string
	var due int64
	err := func() error {
		if len(queues) == 1 && !p.Retry {
			// Two statements in one round trip, in one implicit
			// transaction: the claim sees what the promotion moved.
			b := &pgx.Batch{}
			b.Queue(d.s.fetchBegin, !d.cfg.SyncCommit)
			b.Queue(d.s.promoteNext, queues[0], now, promoteBatch)
			if p.Limit > 0 {
				b.Queue(d.s.claim, now, nullStr(p.WorkerID), nullStr(p.LeaseToken), until, queues[0], p.Limit)
			}
			br := d.pool.SendBatch(ctx, b)
			defer br.Close()
			if _, err := br.Exec(); err != nil {
				return err
			}
			var promoted int64
			var next sql.NullInt64
			if err := br.QueryRow().Scan(&promoted, &next); err != nil {
				return err
			}
			due = next.Int64
			if p.Limit > 0 {
				rows, err := br.Query()
				if res.Tasks, err = scanTasks(rows, err); err != nil {
					return err
				}
			}
			if promoted > int64(len(res.Tasks)) {
				wake = queues
			}
			return br.Close()
		}
		return d.inTx(ctx, func(tx pgx.Tx) error {
			res.Tasks, due, wake = nil, 0, nil
			if _, err := tx.Exec(ctx, d.s.fetchBegin, !d.cfg.SyncCommit); err != nil {
				return err
			}
			left := p.Limit
			for _, q := range queues {
				tag, err := tx.Exec(ctx, d.s.promote, q, now, promoteBatch)
				if err != nil {
					return err
				}
				var got []*ebbtype.TaskInfo
				if p.Retry && left > 0 {
					// The reply of the fetch this repeats may have been lost
					// after its claims committed: they come back first.
					again, err := scanTasks(tx.Query(ctx, d.s.reclaim, q, nullStr(p.LeaseToken), left))
					if err != nil {
						return err
					}
					got = append(got, again...)
					left -= len(again)
				}
				if left > 0 {
					rows, err := tx.Query(ctx, d.s.claim, now, nullStr(p.WorkerID), nullStr(p.LeaseToken), until, q, left)
					claimed, err := scanTasks(rows, err)
					if err != nil {
						return err
					}
					got = append(got, claimed...)
					left -= len(claimed)
				}
				slices.SortFunc(got, sqlcommon.FetchOrder)
				res.Tasks = append(res.Tasks, got...)
				if tag.RowsAffected() > int64(len(got)) {
					wake = append(wake, q)
				}
				var next sql.NullInt64
				if err := tx.QueryRow(ctx, d.s.nextDue, q).Scan(&next); err != nil {
					return err
				}
				if next.Valid && (due == 0 || next.Int64 < due) {
					due = next.Int64
				}
			}
			return nil
		})
	}()
	if err != nil {
		return nil, d.wrap("fetch", err)
	}
	// RETURNING yields rows in update order, not the subquery's.
	if len(queues) == 1 {
		slices.SortFunc(res.Tasks, sqlcommon.FetchOrder)
	}
	res.NextDueAt = sqlcommon.FromNS(due)
	if len(wake) > 0 {
		// Promoted tasks this fetch did not take wait for other workers.
		d.waker.wake(wake)
	}
	return res, nil
}

// ExtendLeases moves the leases the caller still holds in one statement.
func (d *Driver) ExtendLeases(ctx context.Context, p ebbdriver.ExtendLeasesParams) (*ebbdriver.ExtendLeasesResult, error) {
	res := &ebbdriver.ExtendLeasesResult{}
	if len(p.Leases) == 0 {
		return res, nil
	}
	ids, tokens := make([]string, len(p.Leases)), make([]string, len(p.Leases))
	for i, l := range p.Leases {
		ids[i], tokens[i] = l.ID, l.Token
	}
	held := map[string]bool{}
	if err := eachByID(ctx, poolQuerier{d.pool}, d.s.extend, sqlcommon.NS(p.Until), ids, tokens)(func(r rowSet) error {
		var id, token string
		var cancel bool
		if err := r.Scan(&id, &token, &cancel); err != nil {
			return err
		}
		held[id+"\x00"+token] = true
		if cancel {
			res.CancelRequested = append(res.CancelRequested, id)
		}
		return nil
	}); err != nil {
		return nil, d.wrap("extend leases", err)
	}
	for i, id := range ids {
		if !held[id+"\x00"+tokens[i]] {
			res.Lost = append(res.Lost, id)
		}
	}
	return res, nil
}

// Complete records the batch in one statement; each item is fenced by its
// lease token.
func (d *Driver) Complete(ctx context.Context, completions []ebbdriver.Completion) ([]error, error) {
	errs, err := d.complete(ctx, poolQuerier{d.pool}, completions, !d.cfg.SyncCommit)
	if err != nil {
		return nil, d.wrap("complete", err)
	}
	return errs, nil
}

func (d *Driver) complete(ctx context.Context, q querier, completions []ebbdriver.Completion, async bool) ([]error, error) {
	errs := make([]error, len(completions))
	if len(completions) == 0 {
		return errs, nil
	}
	n := len(completions)
	var (
		ids, tokens = make([]string, 0, n), make([]string, 0, n)
		outcomes    = make([]int32, 0, n)
		results     = make([][]byte, 0, n)
		errJSON     = make([]*string, 0, n)
		runAts, nws = make([]int64, 0, n), make([]int64, 0, n)
		index       = make([]int, 0, n) // position in completions of each array entry
	)
	for i, c := range completions {
		if c.Outcome < ebbdriver.OutcomeSucceeded || c.Outcome > ebbdriver.OutcomeHandBack {
			errs[i] = fmt.Errorf("ebbpostgres: complete: task %s: unknown outcome %d: %w", c.ID, c.Outcome, errBadInput)
			continue
		}
		e, err := jsonOrNil(c.Error, c.Error == nil)
		if err != nil {
			return nil, fmt.Errorf("task %s: encoding error: %w", c.ID, err)
		}
		runAt := c.RetryAt
		if c.Outcome == ebbdriver.OutcomeRetry && !runAt.After(c.Now) && runAt.IsZero() {
			runAt = c.Now
		}
		ids, tokens, outcomes = append(ids, c.ID), append(tokens, c.LeaseToken), append(outcomes, int32(c.Outcome))
		results, errJSON = append(results, nilIfEmpty(c.Result)), append(errJSON, e)
		runAts, nws, index = append(runAts, sqlcommon.NS(runAt)), append(nws, sqlcommon.NS(c.Now)), append(index, i)
	}
	if len(ids) == 0 {
		return errs, nil
	}
	done := map[string]bool{}
	stmt, args := d.s.complete, []any{ids, tokens, outcomes, results, errJSON, runAts, nws, shard(), d.channel, async}
	if allSucceeded(outcomes, errJSON) {
		stmt, args = d.s.completeOK, []any{ids, tokens, results, nws, shard(), d.channel, async}
	}
	if err := eachByID(ctx, q, stmt, args...)(
		func(r rowSet) error {
			var id, token string
			var n int64
			var setting sql.NullString
			if err := r.Scan(&id, &token, &n, &setting); err != nil {
				return err
			}
			done[id+"\x00"+token] = true
			return nil
		}); err != nil {
		return nil, err
	}
	var refused []string
	for k, id := range ids {
		if !done[id+"\x00"+tokens[k]] {
			refused = append(refused, id)
		}
	}
	if len(refused) == 0 {
		return errs, nil
	}
	// The fence refused these; only now is it worth asking whether they
	// exist at all.
	exists := map[string]bool{}
	if err := eachByID(ctx, q, d.s.lostOrGone, refused)(func(r rowSet) error {
		var id string
		if err := r.Scan(&id); err != nil {
			return err
		}
		exists[id] = true
		return nil
	}); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for k, id := range ids {
		i, key := index[k], id+"\x00"+tokens[k]
		switch {
		case done[key] && !seen[key]:
			seen[key] = true
		case exists[id] || done[key]:
			errs[i] = fmt.Errorf("ebbpostgres: complete: task %s: %w", id, ebbtype.ErrLeaseLost)
		default:
			errs[i] = fmt.Errorf("ebbpostgres: complete: task %s: %w", id, ebbtype.ErrTaskNotFound)
		}
	}
	return errs, nil
}

// allSucceeded reports whether a batch holds successes only, which
// completeOK stores.
func allSucceeded(outcomes []int32, errs []*string) bool {
	for i, o := range outcomes {
		if o != int32(ebbdriver.OutcomeSucceeded) || errs[i] != nil {
			return false
		}
	}
	return true
}

// TaskGet reads a task in any state.
func (d *Driver) TaskGet(ctx context.Context, id string) (*ebbtype.TaskInfo, error) {
	r, err := scanTask(d.pool.QueryRow(ctx, d.s.taskGet, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("ebbpostgres: task %s: %w", id, ebbtype.ErrTaskNotFound)
	}
	if err != nil {
		return nil, d.wrap("reading task "+id, err)
	}
	return r, nil
}

// TaskAwait waits for the task to finish. It registers as an awaiter, so
// the statement that finishes the task notifies, and re-reads on that
// notification and every AwaitBackstop.
func (d *Driver) TaskAwait(ctx context.Context, id string) (*ebbtype.TaskInfo, error) {
	wake, done, err := d.notify.await(ctx, id)
	if err != nil {
		return nil, d.wrap("awaiting task "+id, err)
	}
	defer done()
	token := randToken()
	register := func() error {
		_, err := d.pool.Exec(ctx, d.s.awaitAdd, id, token, sqlcommon.NS(time.Now().Add(2*d.cfg.AwaitBackstop+time.Minute)))
		return err
	}
	if err := register(); err != nil {
		return nil, d.wrap("awaiting task "+id, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = d.pool.Exec(cctx, d.s.awaitDel, id, token)
	}()
	backstop := time.NewTimer(d.cfg.AwaitBackstop)
	defer backstop.Stop()
	for {
		r, err := d.TaskGet(ctx, id)
		if err != nil {
			return nil, err
		}
		if r.State.Terminal() {
			return r, nil
		}
		select {
		case <-wake:
		case <-backstop.C:
			backstop.Reset(d.cfg.AwaitBackstop)
			if err := register(); err != nil && ctx.Err() == nil {
				d.log.Warn("ebbpostgres: refreshing an awaiter", "task", id, "error", err)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("ebbpostgres: awaiting task %s (still %s): %w", id, r.State, ctx.Err())
		case <-d.closed:
			return nil, fmt.Errorf("ebbpostgres: awaiting task %s: %w", id, errClosed)
		}
	}
}

// TaskCancel cancels a waiting task at once, or flags a running one and
// tells its worker, in one transaction.
func (d *Driver) TaskCancel(ctx context.Context, id string, now time.Time) (ebbtype.State, error) {
	var state ebbtype.State
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		var queue, raw string
		var worker, key sql.NullString
		err := tx.QueryRow(ctx, `SELECT state, queue, worker_id, unique_key FROM `+d.t("tasks")+` WHERE id = $1 FOR UPDATE`, id).
			Scan(&raw, &queue, &worker, &key)
		if errors.Is(err, pgx.ErrNoRows) {
			return ebbtype.ErrTaskNotFound
		}
		if err != nil {
			return err
		}
		state = ebbtype.State(raw)
		switch state {
		case ebbtype.StateScheduled, ebbtype.StateQueued, ebbtype.StateRetrying:
			if _, err := tx.Exec(ctx, `UPDATE `+d.t("tasks")+` SET state = 'cancelled', finished_at = $2,
				expires_at = $2 + retention WHERE id = $1`, id, sqlcommon.NS(now)); err != nil {
				return err
			}
			// A task cancelled before it ran gives its key back whatever
			// its UniqueTTL: the caller wants it gone.
			if key.Valid {
				if _, err := tx.Exec(ctx, `DELETE FROM `+d.t("unique_keys")+` WHERE queue = $1 AND key = $2 AND task_id = $3`,
					queue, key.String, id); err != nil {
					return err
				}
			}
			state = ebbtype.StateCancelled
			return d.notifyTx(ctx, tx, event{K: "f", ID: id})
		case ebbtype.StateRunning:
			if _, err := tx.Exec(ctx, `UPDATE `+d.t("tasks")+` SET cancel_requested = true WHERE id = $1`, id); err != nil {
				return err
			}
			return d.notifyTx(ctx, tx, event{K: "c", Q: queue, ID: id, W: worker.String})
		}
		return nil
	})
	if errors.Is(err, ebbtype.ErrTaskNotFound) {
		return "", fmt.Errorf("ebbpostgres: cancel task %s: %w", id, err)
	}
	if err != nil {
		return "", d.wrap("cancel task "+id, err)
	}
	return state, nil
}

// t names one of ebb's tables in the driver's schema.
func (d *Driver) t(name string) string { return pgx.Identifier{d.schema}.Sanitize() + ".ebb_" + name }

// DeadList lists a queue's dead tasks, newest death first, and counts them.
func (d *Driver) DeadList(ctx context.Context, p ebbdriver.DeadListParams) ([]*ebbtype.TaskInfo, int64, error) {
	var limit any
	if p.Limit > 0 {
		limit = p.Limit
	}
	var (
		out   []*ebbtype.TaskInfo
		total int64
	)
	err := pgx.BeginTxFunc(ctx, d.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+d.t("tasks")+` WHERE queue = $1 AND state = 'dead'`, p.Queue).Scan(&total); err != nil {
			return err
		}
		var err error
		out, err = scanTasks(tx.Query(ctx, `SELECT `+taskCols+` FROM `+d.t("tasks")+` WHERE queue = $1 AND state = 'dead'
			ORDER BY finished_at DESC, id DESC LIMIT $2 OFFSET $3`, p.Queue, limit, max(p.Offset, 0)))
		return err
	})
	if err != nil {
		return nil, 0, d.wrap("listing dead tasks", err)
	}
	return out, total, nil
}

// deadFilter selects a queue's dead tasks, all or those in $2.
func deadFilter(ids []string) (string, []any) {
	if len(ids) == 0 {
		return `queue = $1 AND state = 'dead'`, nil
	}
	return `queue = $1 AND state = 'dead' AND id = ANY($2::text[])`, []any{ids}
}

// DeadRetry moves dead tasks back to Queued, keeping their error history.
func (d *Driver) DeadRetry(ctx context.Context, p ebbdriver.DeadParams) (int64, error) {
	where, extra := deadFilter(p.IDs)
	var n int64
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		n, err = d.retryDead(ctx, tx, where, append([]any{p.Queue}, extra...), p.Now)
		if err != nil || n == 0 {
			return err
		}
		return d.notifyTx(ctx, tx, event{K: "q", Q: p.Queue})
	})
	if err != nil {
		return 0, d.wrap("retrying dead tasks", err)
	}
	return n, nil
}

// retryDead moves the dead tasks deadFilter selected back to Queued at now.
func (d *Driver) retryDead(ctx context.Context, tx pgx.Tx, where string, args []any, now time.Time) (int64, error) {
	// Take back the unique keys still free; a key another task took
	// meanwhile stays with it.
	if _, err := tx.Exec(ctx, `INSERT INTO `+d.t("unique_keys")+` (queue, key, task_id, expires_at)
		SELECT queue, unique_key, id, NULL FROM `+d.t("tasks")+` WHERE `+where+` AND unique_key IS NOT NULL AND unique_ttl = 0
		ON CONFLICT (queue, key) DO NOTHING`, args...); err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET state = 'queued', attempt = 0, run_at = $%d, finished_at = 0,
		expires_at = NULL, cancel_requested = false, lease_token = NULL, lease_expires_at = 0 WHERE %s`,
		d.t("tasks"), len(args)+1, where), append(args, sqlcommon.NS(now))...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// DeadPurge deletes dead tasks.
func (d *Driver) DeadPurge(ctx context.Context, p ebbdriver.DeadParams) (int64, error) {
	where, extra := deadFilter(p.IDs)
	var n int64
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM `+d.t("tasks")+` WHERE `+where, append([]any{p.Queue}, extra...)...)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n > 0 {
			return d.notifyTx(ctx, tx, event{K: "a"}) // awaiters of purged tasks learn they are gone
		}
		return nil
	})
	if err != nil {
		return 0, d.wrap("purging dead tasks", err)
	}
	return n, nil
}

// QueueStats counts every queue's tasks in one statement (one snapshot).
// Each count reads only its state's partial index (an index-only scan once
// vacuum has run), so finished tasks kept for their retention cost nothing;
// the totals are the sum of the queue's counter shards.
func (d *Driver) QueueStats(ctx context.Context, now time.Time) ([]ebbtype.QueueStats, error) {
	rows, err := d.pool.Query(ctx, d.s.stats, sqlcommon.NS(now))
	if err != nil {
		return nil, d.wrap("reading queue stats", err)
	}
	defer rows.Close()
	var out []ebbtype.QueueStats
	for rows.Next() {
		var s ebbtype.QueueStats
		var oldest, next sql.NullInt64
		if err := rows.Scan(&s.Name, &s.Enqueued, &s.Succeeded, &s.Failed, &s.Retried, &s.Queued, &oldest,
			&s.Scheduled, &s.DueScheduled, &next, &s.InFlight, &s.Dead); err != nil {
			return nil, d.wrap("reading queue stats", err)
		}
		s.OldestQueuedAt, s.NextDueAt = sqlcommon.FromNS(oldest.Int64), sqlcommon.FromNS(next.Int64)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("reading queue stats", err)
	}
	return out, nil
}

// PromoteDue moves up to limit due Scheduled/Retrying tasks to Queued.
func (d *Driver) PromoteDue(ctx context.Context, queue string, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, d.s.promote, freshPlan(queue, sqlcommon.NS(now), limit)...)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n > 0 {
			return d.notifyTx(ctx, tx, event{K: "q", Q: queue})
		}
		return nil
	})
	if err != nil {
		return 0, d.wrap("promoting due tasks", err)
	}
	return int(n), nil
}

// RescueExpired requeues (or kills) running tasks whose lease expired, in
// one statement.
func (d *Driver) RescueExpired(ctx context.Context, queue string, now time.Time, limit int) (*ebbdriver.RescueResult, error) {
	res := &ebbdriver.RescueResult{}
	if limit <= 0 {
		return res, nil
	}
	rows, err := d.pool.Query(ctx, d.s.rescue, freshPlan(queue, sqlcommon.NS(now), now.UTC().Format(time.RFC3339Nano), limit, shard(), d.channel)...)
	if err != nil {
		return nil, d.wrap("rescuing expired tasks", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, state string
		var n int64
		if err := rows.Scan(&id, &state, &n); err != nil {
			return nil, d.wrap("rescuing expired tasks", err)
		}
		if state == string(ebbtype.StateDead) {
			res.Dead = append(res.Dead, id)
		} else {
			res.Requeued = append(res.Requeued, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("rescuing expired tasks", err)
	}
	return res, nil
}

// Cleanup deletes, in batches of at most Limit rows per call, finished
// tasks past their retention and dead tasks older than DeadRetention, and
// forgets expired unique keys and awaiters. An empty Queue cleans every
// queue. Each delete is its own statement, so no call holds many row locks
// or a long transaction; autovacuum reclaims the space.
func (d *Driver) Cleanup(ctx context.Context, p ebbdriver.CleanupParams) (int64, error) {
	now := sqlcommon.NS(p.Now)
	deadBefore := sqlcommon.NS(p.Now.Add(-p.DeadRetention))
	queues := []string{p.Queue}
	if p.Queue == "" {
		var err error
		if queues, err = d.queueNames(ctx); err != nil {
			return 0, d.wrap("cleaning up", err)
		}
	}
	var n int64
	del := func(query string, args ...any) error {
		var lim any // NULL: no limit
		if p.Limit > 0 {
			if n >= int64(p.Limit) {
				return nil
			}
			lim = int64(p.Limit) - n
		}
		tag, err := d.pool.Exec(ctx, query, freshPlan(append(args, lim)...)...)
		if err != nil {
			return err
		}
		n += tag.RowsAffected()
		return nil
	}
	for _, q := range queues {
		if err := del(d.s.cleanupFinished, q, now); err != nil {
			return n, d.wrap(fmt.Sprintf("deleting finished tasks of queue %q", q), err)
		}
		if err := del(d.s.cleanupDead, q, deadBefore); err != nil {
			return n, d.wrap(fmt.Sprintf("deleting dead tasks of queue %q", q), err)
		}
	}
	if _, err := d.pool.Exec(ctx, d.s.cleanupKeys, now, max(p.Limit, 1000)); err != nil {
		return n, d.wrap("deleting expired unique keys", err)
	}
	if _, err := d.pool.Exec(ctx, d.s.cleanupAwaiters, sqlcommon.NS(time.Now())); err != nil {
		return n, d.wrap("deleting expired awaiters", err)
	}
	if n > 0 {
		d.notifyBestEffort(ctx, event{K: "a"})
	}
	return n, nil
}

func (d *Driver) queueNames(ctx context.Context) ([]string, error) {
	rows, err := d.pool.Query(ctx, d.s.queueNames)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
