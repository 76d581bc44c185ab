package ebbsqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// promoteBatch bounds how many due tasks one Fetch promotes per queue, so a
// backlog of millions of due tasks is promoted over several fetches instead
// of one long write lock. NextDueAt then says "now" and the caller fetches
// again at once.
const promoteBatch = 10000

// encoded is what Enqueue computes of a task before any transaction.
type encoded struct {
	headers, errors any
	state           ebbtype.State
}

// Enqueue stores the batch in one transaction, together with the batches of
// concurrent calls (see enqueueCall).
func (d *Driver) Enqueue(ctx context.Context, tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
	enc := make([]encoded, len(tasks))
	for i, t := range tasks {
		if t == nil {
			return nil, fmt.Errorf("ebbsqlite: enqueue: task %d is nil: %w", i, errBadInput)
		}
		if t.ID == "" || t.Queue == "" {
			return nil, fmt.Errorf("ebbsqlite: enqueue: task %d (id %q, queue %q) lacks an ID or a Queue; the client must fill both in: %w", i, t.ID, t.Queue, errBadInput)
		}
		var err error
		if enc[i].headers, err = encodeHeaders(t.Headers); err != nil {
			return nil, fmt.Errorf("ebbsqlite: enqueue: task %s: encoding headers: %w", t.ID, err)
		}
		if enc[i].errors, err = encodeErrors(t.Errors); err != nil {
			return nil, fmt.Errorf("ebbsqlite: enqueue: task %s: encoding errors: %w", t.ID, err)
		}
		enc[i].state = ebbtype.StateQueued
		if t.RunAt.After(t.EnqueuedAt) {
			enc[i].state = ebbtype.StateScheduled
		}
	}
	c := &enqueueCall{tasks: tasks, enc: enc}
	if err := d.enqueue.Do(ctx, c); err != nil {
		return nil, fmt.Errorf("ebbsqlite: enqueue: waiting for the write connection: %w", err)
	}
	return c.results, c.err
}

// uniqueExpiry is when a UniqueTTL key stops being held.
func uniqueExpiry(t *ebbtype.TaskInfo) int64 {
	return sqlcommon.NS(t.EnqueuedAt.Add(t.UniqueTTL))
}

// uniqueHeld tells whether t's unique key is held by another task, and by
// which.
func uniqueHeld(ctx context.Context, holder *sql.Stmt, t *ebbtype.TaskInfo) (string, bool, error) {
	var id string
	var exp sql.NullInt64
	var state sql.NullString
	err := holder.QueryRowContext(ctx, t.Queue, t.UniqueKey).Scan(&id, &exp, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading unique key %q: %w", t.UniqueKey, err)
	}
	if id == t.ID {
		return "", false, nil // the same task again: the id check reports it
	}
	if exp.Valid {
		return id, exp.Int64 > sqlcommon.NS(t.EnqueuedAt), nil
	}
	// A key whose holder is gone or finished was not released (a crash
	// between versions, a manual delete): treat it as free.
	return id, state.Valid && !ebbtype.State(state.String).Terminal(), nil
}

// bumpReady advances ready_seq of each queue in ready, recording the new
// values there for notifier.queued.
func bumpReady(ctx context.Context, tx *sql.Tx, s *stmts, ready map[string]int64) error {
	if len(ready) == 0 {
		return nil
	}
	st := tx.StmtContext(ctx, s.queueReady)
	for q := range ready {
		var seq int64
		if err := st.QueryRowContext(ctx, q).Scan(&seq); err != nil {
			return fmt.Errorf("announcing queue %q: %w", q, err)
		}
		ready[q] = seq
	}
	return nil
}

// Fetch promotes due tasks and claims up to Limit in one transaction.
func (d *Driver) Fetch(ctx context.Context, p ebbdriver.FetchParams) (*ebbdriver.FetchResult, error) {
	res := &ebbdriver.FetchResult{}
	queues := sqlcommon.Dedup(p.Queues)
	if len(queues) == 0 {
		return res, nil
	}
	now := sqlcommon.NS(p.Now)
	ready := map[string]int64{}
	err := d.writeTx(ctx, "fetch", func(tx *sql.Tx) error {
		res.Tasks, res.NextDueAt = nil, time.Time{}
		clear(ready)
		promote := tx.StmtContext(ctx, d.stmts.promote)
		claim := tx.StmtContext(ctx, d.stmts.claim)
		nextDue := tx.StmtContext(ctx, d.stmts.nextDue)
		left := p.Limit
		var due int64
		for _, q := range queues {
			r, err := promote.ExecContext(ctx, q, now, promoteBatch)
			if err != nil {
				return fmt.Errorf("promoting due tasks of queue %q: %w", q, err)
			}
			promoted, _ := r.RowsAffected()
			var got []*ebbtype.TaskInfo
			n := 0 // new claims in q
			if p.Retry && left > 0 {
				// A SQLite fetch cannot lose its reply in transit, but a
				// caller that saw an error retries the same way on every
				// driver; what the first call claimed comes back first.
				rows, err := tx.StmtContext(ctx, d.stmts.reclaim).QueryContext(ctx, q, nullStr(p.LeaseToken))
				if err != nil {
					return fmt.Errorf("reading the claims of a retried fetch in queue %q: %w", q, err)
				}
				if got, err = scanTasks(rows); err != nil {
					return fmt.Errorf("reading the claims of a retried fetch in queue %q: %w", q, err)
				}
				slices.SortFunc(got, sqlcommon.FetchOrder)
				got = got[:min(len(got), left)]
				res.Tasks = append(res.Tasks, got...)
				left -= len(got)
			}
			if left > 0 {
				rows, err := claim.QueryContext(ctx, now, nullStr(p.WorkerID), nullStr(p.LeaseToken),
					sqlcommon.NS(p.Now.Add(p.LeaseDuration)), q, left)
				if err != nil {
					return fmt.Errorf("claiming tasks of queue %q: %w", q, err)
				}
				if got, err = scanTasks(rows); err != nil {
					return fmt.Errorf("claiming tasks of queue %q: %w", q, err)
				}
				// RETURNING yields rows in update order, not ORDER BY's.
				slices.SortFunc(got, sqlcommon.FetchOrder)
				res.Tasks = append(res.Tasks, got...)
				left -= len(got)
				n += len(got)
			}
			if promoted > int64(n) {
				ready[q] = 0 // promoted tasks wait for other workers
			}
			var next sql.NullInt64
			if err := nextDue.QueryRowContext(ctx, q).Scan(&next); err != nil {
				return fmt.Errorf("reading next due time of queue %q: %w", q, err)
			}
			if next.Valid && (due == 0 || next.Int64 < due) {
				due = next.Int64
			}
		}
		res.NextDueAt = sqlcommon.FromNS(due)
		return bumpReady(ctx, tx, d.stmts, ready)
	})
	if err != nil {
		return nil, err
	}
	d.notify.queued(ready)
	return res, nil
}

// ExtendLeases moves the leases the caller still holds in one transaction.
func (d *Driver) ExtendLeases(ctx context.Context, p ebbdriver.ExtendLeasesParams) (*ebbdriver.ExtendLeasesResult, error) {
	res := &ebbdriver.ExtendLeasesResult{}
	if len(p.Leases) == 0 {
		return res, nil
	}
	until := sqlcommon.NS(p.Until)
	err := d.writeTx(ctx, "extend leases", func(tx *sql.Tx) error {
		res.Lost, res.CancelRequested = nil, nil
		st := tx.StmtContext(ctx, d.stmts.extend)
		for _, l := range p.Leases {
			var cancel int64
			err := st.QueryRowContext(ctx, until, l.ID, l.Token).Scan(&cancel)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				res.Lost = append(res.Lost, l.ID)
			case err != nil:
				return fmt.Errorf("extending lease of task %s: %w", l.ID, err)
			case cancel != 0:
				res.CancelRequested = append(res.CancelRequested, l.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// totals are a queue's running-total increments within one transaction.
type totals struct{ succeeded, failed, retried int64 }

func addTotals(ctx context.Context, tx *sql.Tx, s *stmts, t map[string]*totals) error {
	if len(t) == 0 {
		return nil
	}
	st := tx.StmtContext(ctx, s.queueTotals)
	for q, v := range t {
		if _, err := st.ExecContext(ctx, q, v.succeeded, v.failed, v.retried); err != nil {
			return fmt.Errorf("updating totals of queue %q: %w", q, err)
		}
	}
	return nil
}

// settle ends a write transaction that finished tasks: it adds the
// transaction's totals and bumps ready_seq of the queues in ready.
func settle(ctx context.Context, tx *sql.Tx, s *stmts, sums map[string]*totals, ready map[string]int64) error {
	if err := addTotals(ctx, tx, s, sums); err != nil {
		return err
	}
	return bumpReady(ctx, tx, s, ready)
}

// announce tells, once a write transaction has committed, the fetchers of
// the queues in ready and the awaiters of the finished tasks.
func (d *Driver) announce(ready map[string]int64, finished []string) {
	d.notify.queued(ready)
	d.notify.finished(finished)
}

func totalsOf(m map[string]*totals, q string) *totals {
	t := m[q]
	if t == nil {
		t = &totals{}
		m[q] = t
	}
	return t
}

// Complete records the batch in one transaction; each item is fenced by its
// lease token.
func (d *Driver) Complete(ctx context.Context, completions []ebbdriver.Completion) ([]error, error) {
	errs := make([]error, len(completions))
	if len(completions) == 0 {
		return errs, nil
	}
	errJSON := make([]any, len(completions))
	for i, c := range completions {
		if c.Error != nil {
			s, err := encodeAttemptError(c.Error)
			if err != nil {
				return nil, fmt.Errorf("ebbsqlite: complete: task %s: encoding error: %w", c.ID, err)
			}
			errJSON[i] = s
		}
	}
	ready := map[string]int64{}
	var finished []string
	err := d.writeTx(ctx, "complete", func(tx *sql.Tx) error {
		clear(ready)
		clear(errs)
		finished = finished[:0]
		sums := map[string]*totals{}
		var release *sql.Stmt
		releaseKey := func(key sql.NullString, ttl int64, id string) error {
			if !key.Valid || ttl != 0 {
				return nil
			}
			if release == nil {
				release = tx.StmtContext(ctx, d.stmts.uniqueRelease)
			}
			_, err := release.ExecContext(ctx, key.String, id)
			return err
		}
		var succeed, retry, dead, cancel, handBack *sql.Stmt
		stmt := func(p **sql.Stmt, s *sql.Stmt) *sql.Stmt {
			if *p == nil {
				*p = tx.StmtContext(ctx, s)
			}
			return *p
		}
		// Successes go first, all in one statement; whatever its fence
		// refused takes the per-task path below, which tells a lost lease
		// from a deleted task.
		done, err := d.succeedBatch(ctx, tx, completions, sums, &finished, releaseKey)
		if err != nil {
			return err
		}
		for i, c := range completions {
			if done[i] {
				continue
			}
			now := sqlcommon.NS(c.Now)
			var (
				queue string
				key   sql.NullString
				ttl   int64
				err   error
			)
			switch c.Outcome {
			case ebbdriver.OutcomeSucceeded:
				err = stmt(&succeed, d.stmts.succeed).QueryRowContext(ctx, c.ID, c.LeaseToken, now, nullBytes(c.Result)).
					Scan(&queue, &key, &ttl)
				if err == nil {
					totalsOf(sums, queue).succeeded++
					finished = append(finished, c.ID)
					err = releaseKey(key, ttl, c.ID)
				}
			case ebbdriver.OutcomeRetry:
				state, runAt := ebbtype.StateRetrying, c.RetryAt
				if !runAt.After(c.Now) {
					state = ebbtype.StateQueued
					if runAt.IsZero() {
						runAt = c.Now
					}
				}
				err = stmt(&retry, d.stmts.retry).QueryRowContext(ctx, c.ID, c.LeaseToken, now, string(state), sqlcommon.NS(runAt), errJSON[i]).
					Scan(&queue)
				if err == nil {
					totalsOf(sums, queue).retried++
					if state == ebbtype.StateQueued {
						ready[queue] = 0
					}
				}
			case ebbdriver.OutcomeDead:
				err = stmt(&dead, d.stmts.dead).QueryRowContext(ctx, c.ID, c.LeaseToken, now, errJSON[i]).
					Scan(&queue, &key, &ttl)
				if err == nil {
					totalsOf(sums, queue).failed++
					finished = append(finished, c.ID)
					err = releaseKey(key, ttl, c.ID)
				}
			case ebbdriver.OutcomeCancelled:
				err = stmt(&cancel, d.stmts.cancel).QueryRowContext(ctx, c.ID, c.LeaseToken, now, errJSON[i]).
					Scan(&queue, &key, &ttl)
				if err == nil {
					finished = append(finished, c.ID)
					err = releaseKey(key, ttl, c.ID)
				}
			case ebbdriver.OutcomeHandBack:
				err = stmt(&handBack, d.stmts.handBack).QueryRowContext(ctx, c.ID, c.LeaseToken).Scan(&queue)
				if err == nil {
					ready[queue] = 0
				}
			default:
				errs[i] = fmt.Errorf("ebbsqlite: complete: task %s: unknown outcome %d: %w", c.ID, c.Outcome, errBadInput)
				continue
			}
			if errors.Is(err, sql.ErrNoRows) {
				// The fence refused it; only then is it worth asking whether
				// the task exists at all (deleted, or a replaced file).
				var one int
				switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM tasks WHERE id = ?1`, c.ID).Scan(&one); {
				case errors.Is(err, sql.ErrNoRows):
					errs[i] = fmt.Errorf("ebbsqlite: complete: task %s: %w", c.ID, ebbtype.ErrTaskNotFound)
				case err != nil:
					return fmt.Errorf("completing task %s: %w", c.ID, err)
				default:
					errs[i] = fmt.Errorf("ebbsqlite: complete: task %s: %w", c.ID, ebbtype.ErrLeaseLost)
				}
				continue
			}
			if err != nil {
				return fmt.Errorf("completing task %s: %w", c.ID, err)
			}
		}
		return settle(ctx, tx, d.stmts, sums, ready)
	})
	if err != nil {
		return nil, err
	}
	d.announce(ready, finished)
	return errs, nil
}

func ptr[T any](v T) *T { return &v }

// succeedBatchMax bounds one batched success statement's JSON argument.
const succeedBatchMax = 1000

// succeedBatch marks the successful completions succeeded with succeedN and
// reports which indexes it stored. A task id that appears twice is stored
// once; its other completions go to the per-task path, which refuses them as
// the fence would.
func (d *Driver) succeedBatch(ctx context.Context, tx *sql.Tx, completions []ebbdriver.Completion,
	sums map[string]*totals, finished *[]string, release func(sql.NullString, int64, string) error) ([]bool, error) {
	done := make([]bool, len(completions))
	type item struct {
		I string  `json:"i"`
		T string  `json:"t"`
		N int64   `json:"n"`
		R *string `json:"r,omitempty"` // nil: NULL; "": an empty result
	}
	var (
		st    *sql.Stmt
		batch []item
		at    = map[string][]int{} // id → indexes of its successes, in order
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		arg, err := json.Marshal(batch)
		if err != nil {
			return err
		}
		batch = batch[:0]
		if st == nil {
			st = tx.StmtContext(ctx, d.stmts.succeedN)
		}
		rows, err := st.QueryContext(ctx, string(arg))
		if err != nil {
			return fmt.Errorf("completing tasks: %w", err)
		}
		defer rows.Close()
		type heldKey struct {
			key sql.NullString
			ttl int64
			id  string
		}
		var keys []heldKey
		for rows.Next() {
			var (
				id, queue string
				key       sql.NullString
				ttl       int64
			)
			if err := rows.Scan(&id, &queue, &key, &ttl); err != nil {
				return fmt.Errorf("completing tasks: %w", err)
			}
			idx := at[id]
			if len(idx) == 0 {
				return fmt.Errorf("completing tasks: the database returned task %s, which was not asked for", id)
			}
			done[idx[0]] = true
			at[id] = nil
			totalsOf(sums, queue).succeeded++
			*finished = append(*finished, id)
			if key.Valid {
				keys = append(keys, heldKey{key, ttl, id})
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("completing tasks: %w", err)
		}
		rows.Close()
		// After the rows are read: a statement of the same transaction
		// should not run while another one still steps.
		for _, k := range keys {
			if err := release(k.key, k.ttl, k.id); err != nil {
				return fmt.Errorf("releasing the unique key of task %s: %w", k.id, err)
			}
		}
		clear(at)
		return nil
	}
	for i, c := range completions {
		if c.Outcome != ebbdriver.OutcomeSucceeded {
			continue
		}
		if len(at[c.ID]) > 0 {
			continue // a second success of one id in a batch: refused below
		}
		at[c.ID] = append(at[c.ID], i)
		it := item{I: c.ID, T: c.LeaseToken, N: sqlcommon.NS(c.Now)}
		if c.Result != nil {
			it.R = ptr(hex.EncodeToString(c.Result))
		}
		batch = append(batch, it)
		if len(batch) == succeedBatchMax {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return done, nil
}

// TaskGet reads a task in any state.
func (d *Driver) TaskGet(ctx context.Context, id string) (*ebbtype.TaskInfo, error) {
	r, err := scanTask(d.stmts.taskGet.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("ebbsqlite: task %s: %w", id, ebbtype.ErrTaskNotFound)
	}
	if err != nil {
		return nil, d.wrap("reading task "+id, err)
	}
	return r, nil
}

// TaskAwait waits for the task to finish. It re-reads the task only when a
// commit that could have finished it is seen (in this process at once, from
// other processes through the poller), and every AwaitBackstop.
func (d *Driver) TaskAwait(ctx context.Context, id string) (*ebbtype.TaskInfo, error) {
	wake, done := d.notify.await(id)
	defer done()
	if err := d.notify.start(ctx); err != nil {
		return nil, err
	}
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
		case <-ctx.Done():
			return nil, fmt.Errorf("ebbsqlite: awaiting task %s (still %s): %w", id, r.State, ctx.Err())
		case <-d.closed:
			return nil, fmt.Errorf("ebbsqlite: awaiting task %s: %w", id, errClosed)
		}
	}
}

// TaskCancel cancels a waiting task at once, or flags a running one and
// tells its worker.
func (d *Driver) TaskCancel(ctx context.Context, id string, now time.Time) (ebbtype.State, error) {
	var (
		state ebbtype.State
		ev    *pendingEvent
	)
	err := d.writeTx(ctx, "cancel task "+id, func(tx *sql.Tx) error {
		ev = nil
		var (
			queue    string
			worker   sql.NullString
			key      sql.NullString
			rawState string
		)
		err := tx.QueryRowContext(ctx, `SELECT state, queue, worker_id, unique_key FROM tasks WHERE id = ?1`, id).
			Scan(&rawState, &queue, &worker, &key)
		if errors.Is(err, sql.ErrNoRows) {
			return ebbtype.ErrTaskNotFound
		}
		if err != nil {
			return err
		}
		state = ebbtype.State(rawState)
		switch state {
		case ebbtype.StateScheduled, ebbtype.StateQueued, ebbtype.StateRetrying:
			if _, err := tx.ExecContext(ctx, `UPDATE tasks SET state = 'cancelled', finished_at = ?2,
				expires_at = ?2 + retention WHERE id = ?1`, id, sqlcommon.NS(now)); err != nil {
				return err
			}
			// The contract releases the key of a task cancelled before it
			// ran whatever its UniqueTTL: the caller wants it gone.
			if key.Valid {
				if _, err := tx.ExecContext(ctx, `DELETE FROM unique_keys WHERE key = ?1 AND task_id = ?2`,
					key.String, id); err != nil {
					return err
				}
			}
			state = ebbtype.StateCancelled
		case ebbtype.StateRunning:
			if _, err := tx.ExecContext(ctx, `UPDATE tasks SET cancel_requested = 1 WHERE id = ?1`, id); err != nil {
				return err
			}
			ev = &pendingEvent{Event: ebbdriver.Event{Kind: ebbdriver.EventCancel, Queue: queue, TaskID: id, WorkerID: worker.String}}
			if ev.seq, err = insertEvent(ctx, tx, "cancel", ev.Event, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if ev != nil {
		d.notify.events([]pendingEvent{*ev})
	}
	if state == ebbtype.StateCancelled {
		d.notify.finished([]string{id})
	}
	return state, nil
}

// eventsKept is how many cancel/drain events the events table keeps for
// pollers in other processes: only the latest few matter, as pollers read
// them within a poll interval.
const eventsKept = 10000

func insertEvent(ctx context.Context, tx *sql.Tx, kind string, ev ebbdriver.Event, now time.Time) (int64, error) {
	var seq int64
	err := tx.QueryRowContext(ctx, `INSERT INTO events (kind, queue, task_id, worker_id, at)
		VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq`,
		kind, nullStr(ev.Queue), nullStr(ev.TaskID), nullStr(ev.WorkerID), sqlcommon.NS(now)).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("recording %s event: %w", kind, err)
	}
	if seq%100 == 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE seq <= ?1`, seq-eventsKept); err != nil {
			return 0, fmt.Errorf("pruning events: %w", err)
		}
	}
	return seq, nil
}

// idsJSON passes a list of ids as one parameter, for json_each: no limit on
// the number of SQL variables.
func idsJSON(ids []string) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

// DeadList lists a queue's dead tasks, newest death first, and counts them.
func (d *Driver) DeadList(ctx context.Context, p ebbdriver.DeadListParams) ([]*ebbtype.TaskInfo, int64, error) {
	limit := int64(p.Limit)
	if limit <= 0 {
		limit = -1
	}
	tx, err := d.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, d.wrap("listing dead tasks", err)
	}
	defer func() { _ = tx.Rollback() }()
	var total int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM tasks WHERE queue = ?1 AND state = 'dead'`, p.Queue).
		Scan(&total); err != nil {
		return nil, 0, d.wrap("counting dead tasks", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+taskCols+` FROM tasks WHERE queue = ?1 AND state = 'dead'
		ORDER BY finished_at DESC, id DESC LIMIT ?2 OFFSET ?3`, p.Queue, limit, max(p.Offset, 0))
	if err != nil {
		return nil, 0, d.wrap("listing dead tasks", err)
	}
	out, err := scanTasks(rows)
	if err != nil {
		return nil, 0, d.wrap("listing dead tasks", err)
	}
	return out, total, nil
}

// deadFilter selects a queue's dead tasks, all or those in ?2 (a JSON array).
func deadFilter(ids []string) (string, []any) {
	if len(ids) == 0 {
		return `queue = ?1 AND state = 'dead'`, nil
	}
	return `queue = ?1 AND state = 'dead' AND id IN (SELECT value FROM json_each(?2))`, []any{idsJSON(ids)}
}

// DeadRetry moves dead tasks back to Queued, keeping their error history.
func (d *Driver) DeadRetry(ctx context.Context, p ebbdriver.DeadParams) (int64, error) {
	where, extra := deadFilter(p.IDs)
	args := append([]any{p.Queue}, extra...)
	var n int64
	ready := map[string]int64{}
	err := d.writeTx(ctx, "retrying dead tasks", func(tx *sql.Tx) error {
		clear(ready)
		var err error
		if n, err = retryDead(ctx, tx, where, args, p.Now); err != nil {
			return err
		}
		if n > 0 {
			ready[p.Queue] = 0
		}
		return bumpReady(ctx, tx, d.stmts, ready)
	})
	if err != nil {
		return 0, err
	}
	d.notify.queued(ready)
	return n, nil
}

// retryDead moves the dead tasks deadFilter selected back to Queued at now
// and returns how many moved.
func retryDead(ctx context.Context, tx *sql.Tx, where string, args []any, now time.Time) (int64, error) {
	// Take back the unique keys still free; a key another task took
	// meanwhile stays with it.
	if _, err := tx.ExecContext(ctx, `INSERT INTO unique_keys (queue, key, task_id, expires_at)
		SELECT queue, unique_key, id, NULL FROM tasks WHERE `+where+` AND unique_key IS NOT NULL AND unique_ttl = 0
		ON CONFLICT (queue, key) DO NOTHING`, args...); err != nil {
		return 0, err
	}
	// run_at moves to now: the task waits from its retry, not from its
	// first enqueue, as OldestQueuedAt reports.
	r, err := tx.ExecContext(ctx, `UPDATE tasks SET state = 'queued', attempt = 0, run_at = ?`+
		fmt.Sprint(len(args)+1)+`, finished_at = 0, expires_at = NULL, cancel_requested = 0,
		lease_token = NULL, lease_expires_at = 0 WHERE `+where, append(args, sqlcommon.NS(now))...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

// DeadPurge deletes dead tasks.
func (d *Driver) DeadPurge(ctx context.Context, p ebbdriver.DeadParams) (int64, error) {
	where, extra := deadFilter(p.IDs)
	var n int64
	err := d.writeTx(ctx, "purging dead tasks", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM tasks WHERE `+where, append([]any{p.Queue}, extra...)...)
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		d.notify.wakeAll() // awaiters of purged tasks learn they are gone
	}
	return n, nil
}

// QueueStats counts every queue's tasks from one snapshot. Each count walks
// only its state's partial index, so finished tasks kept for their retention
// cost nothing.
func (d *Driver) QueueStats(ctx context.Context, now time.Time) ([]ebbtype.QueueStats, error) {
	tx, err := d.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, d.wrap("reading queue stats", err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.StmtContext(ctx, d.stmts.statsQueues).QueryContext(ctx)
	if err != nil {
		return nil, d.wrap("reading queue stats", err)
	}
	var out []ebbtype.QueueStats
	for rows.Next() {
		var s ebbtype.QueueStats
		if err := rows.Scan(&s.Name, &s.Enqueued, &s.Succeeded, &s.Failed, &s.Retried); err != nil {
			rows.Close()
			return nil, d.wrap("reading queue stats", err)
		}
		out = append(out, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, d.wrap("reading queue stats", err)
	}
	queued, waiting := tx.StmtContext(ctx, d.stmts.statsQueued), tx.StmtContext(ctx, d.stmts.statsWaiting)
	running, dead := tx.StmtContext(ctx, d.stmts.statsRunning), tx.StmtContext(ctx, d.stmts.statsDead)
	for i := range out {
		s := &out[i]
		var oldest sql.NullInt64
		if err := queued.QueryRowContext(ctx, s.Name).Scan(&s.Queued, &oldest); err != nil {
			return nil, d.wrap("counting queued tasks", err)
		}
		s.OldestQueuedAt = sqlcommon.FromNS(oldest.Int64)
		var next sql.NullInt64
		if err := waiting.QueryRowContext(ctx, s.Name, sqlcommon.NS(now)).Scan(&s.Scheduled, &s.DueScheduled, &next); err != nil {
			return nil, d.wrap("counting scheduled tasks", err)
		}
		s.NextDueAt = sqlcommon.FromNS(next.Int64)
		if err := running.QueryRowContext(ctx, s.Name).Scan(&s.InFlight); err != nil {
			return nil, d.wrap("counting running tasks", err)
		}
		if err := dead.QueryRowContext(ctx, s.Name).Scan(&s.Dead); err != nil {
			return nil, d.wrap("counting dead tasks", err)
		}
	}
	return out, nil
}

// The counting queries, kept apart so a test can check their plans. The
// walk of the waiting index that the Scheduled count needs anyway yields the
// due count and the earliest run_at too.
const (
	statsQueuesSQL  = `SELECT name, enqueued, succeeded, failed, retried FROM queues ORDER BY name`
	statsQueuedSQL  = `SELECT count(*), min(run_at) FROM tasks WHERE queue = ?1 AND state = 'queued'`
	statsWaitingSQL = `SELECT count(*), count(*) FILTER (WHERE run_at <= ?2), min(run_at)
		FROM tasks WHERE queue = ?1 AND state IN ('scheduled', 'retrying')`
	statsRunningSQL = `SELECT count(*) FROM tasks WHERE queue = ?1 AND state = 'running'`
	statsDeadSQL    = `SELECT count(*) FROM tasks WHERE queue = ?1 AND state = 'dead'`
)

// PromoteDue moves up to limit due Scheduled/Retrying tasks to Queued.
func (d *Driver) PromoteDue(ctx context.Context, queue string, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	ready := map[string]int64{}
	err := d.writeTx(ctx, "promoting due tasks", func(tx *sql.Tx) error {
		clear(ready)
		r, err := tx.StmtContext(ctx, d.stmts.promote).ExecContext(ctx, queue, sqlcommon.NS(now), limit)
		if err != nil {
			return err
		}
		if n, err = r.RowsAffected(); err != nil {
			return err
		}
		if n > 0 {
			ready[queue] = 0
		}
		return bumpReady(ctx, tx, d.stmts, ready)
	})
	if err != nil {
		return 0, err
	}
	d.notify.queued(ready)
	return int(n), nil
}

// RescueExpired requeues (or kills) running tasks whose lease expired.
func (d *Driver) RescueExpired(ctx context.Context, queue string, now time.Time, limit int) (*ebbdriver.RescueResult, error) {
	res := &ebbdriver.RescueResult{}
	if limit <= 0 {
		return res, nil
	}
	at, _ := now.MarshalJSON() // a JSON string, as AttemptError.At encodes
	entry := `json_object('attempt', attempt, 'at', json(?3), 'error', 'lease expired', 'worker_id', coalesce(worker_id, ''))`
	ready := map[string]int64{}
	err := d.writeTx(ctx, "rescuing expired tasks", func(tx *sql.Tx) error {
		res.Requeued, res.Dead = nil, nil
		clear(ready)
		rows, err := tx.QueryContext(ctx, `UPDATE tasks SET
			state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
			finished_at = CASE WHEN attempt >= max_attempts THEN ?2 ELSE finished_at END,
			errors = `+appendErr(entry)+`,
			lease_token = NULL, lease_expires_at = 0
			WHERE rowid IN (SELECT rowid FROM tasks WHERE queue = ?1 AND state = 'running'
				AND lease_expires_at < ?2 ORDER BY lease_expires_at LIMIT ?4)
			RETURNING id, state, unique_key, unique_ttl`, queue, sqlcommon.NS(now), string(at), limit)
		if err != nil {
			return err
		}
		var release []string
		for rows.Next() {
			var (
				id, state string
				key       sql.NullString
				ttl       int64
			)
			if err := rows.Scan(&id, &state, &key, &ttl); err != nil {
				rows.Close()
				return err
			}
			if state == string(ebbtype.StateDead) {
				res.Dead = append(res.Dead, id)
				if key.Valid && ttl == 0 {
					release = append(release, key.String, id)
				}
			} else {
				res.Requeued = append(res.Requeued, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := 0; i < len(release); i += 2 {
			if _, err := tx.StmtContext(ctx, d.stmts.uniqueRelease).ExecContext(ctx, release[i], release[i+1]); err != nil {
				return err
			}
		}
		if len(res.Requeued) > 0 {
			ready[queue] = 0
		}
		sums := map[string]*totals{}
		if len(res.Requeued)+len(res.Dead) > 0 {
			sums[queue] = &totals{retried: int64(len(res.Requeued)), failed: int64(len(res.Dead))}
		}
		return settle(ctx, tx, d.stmts, sums, ready)
	})
	if err != nil {
		return nil, err
	}
	d.announce(ready, res.Dead)
	return res, nil
}

// Cleanup deletes, in batches of at most Limit rows, finished tasks past
// their retention and dead tasks older than DeadRetention, and forgets
// expired unique keys. An empty Queue cleans every queue.
func (d *Driver) Cleanup(ctx context.Context, p ebbdriver.CleanupParams) (int64, error) {
	limit := int64(p.Limit)
	if limit <= 0 {
		limit = -1
	}
	now := sqlcommon.NS(p.Now)
	deadBefore := sqlcommon.NS(p.Now.Add(-p.DeadRetention))
	var n int64
	err := d.writeTx(ctx, "cleaning up", func(tx *sql.Tx) error {
		n = 0
		queues := []string{p.Queue}
		if p.Queue == "" {
			var err error
			if queues, err = queueNames(ctx, tx); err != nil {
				return err
			}
		}
		del := func(query string, args ...any) error {
			if limit >= 0 && n >= limit {
				return nil
			}
			lim := limit
			if lim > 0 {
				lim -= n
			}
			r, err := tx.ExecContext(ctx, query, append(args, lim)...)
			if err != nil {
				return err
			}
			k, err := r.RowsAffected()
			n += k
			return err
		}
		for _, q := range queues {
			if err := del(`DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks
				WHERE queue = ?1 AND expires_at <= ?2 LIMIT ?3)`, q, now); err != nil {
				return fmt.Errorf("deleting finished tasks of queue %q: %w", q, err)
			}
			if err := del(`DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks
				WHERE queue = ?1 AND state = 'dead' AND finished_at < ?2 LIMIT ?3)`, q, deadBefore); err != nil {
				return fmt.Errorf("deleting dead tasks of queue %q: %w", q, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM unique_keys WHERE (queue, key) IN (SELECT queue, key FROM unique_keys
			WHERE expires_at <= ?1 LIMIT ?2)`, now, max(limit, 1000)); err != nil {
			return fmt.Errorf("deleting expired unique keys: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		d.notify.wakeAll()
	}
	return n, nil
}

func queueNames(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM queues ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var q string
		if err := rows.Scan(&q); err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, rows.Err()
}
