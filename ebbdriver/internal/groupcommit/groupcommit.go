// Package groupcommit lets concurrent calls share one commit (group
// commit): a call that finds no commit in flight runs its own at once, so a
// lone caller waits for nothing; calls arriving while one is in flight queue
// up, and the first of them, once that commit ends, commits all of them in
// the next. The drivers use it for Enqueue, where most of a single-task call
// is the round trip or transaction around it.
package groupcommit

import (
	"context"
	"fmt"
	"sync"
)

// Group commits batches of calls of type C, one batch at a time.
type Group[C any] struct {
	max    int
	commit func(ctx context.Context, batch []C)

	mu      sync.Mutex
	busy    bool // a leader is committing
	pending []*waiter[C]
}

type waiter[C any] struct {
	c C
	// wake is sent to once: true when this call is to lead the next batch,
	// false when a leader has committed it.
	wake chan bool
}

// New returns a Group whose batches hold at most max calls, so one commit's
// latency stays bounded under any number of callers. commit stores a batch
// and records each call's outcome in the call itself (C is a pointer type).
// A batch of one runs under its caller's context, deadline and all; a
// shared batch runs under one that the leading caller's cancellation does
// not reach, since the other calls ride in the same commit.
func New[C any](max int, commit func(ctx context.Context, batch []C)) *Group[C] {
	return &Group[C]{max: max, commit: commit}
}

// Do commits c, alone or in a batch with others. It returns ctx's error,
// and c was not committed, only if ctx ended before any batch took c;
// otherwise nil, once a commit that held c has ended (c holds its outcome).
func (g *Group[C]) Do(ctx context.Context, c C) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &waiter[C]{c: c, wake: make(chan bool, 1)}
	g.mu.Lock()
	if g.busy {
		g.pending = append(g.pending, w)
		g.mu.Unlock()
		select {
		case lead := <-w.wake:
			if !lead {
				return nil
			}
		case <-ctx.Done():
			g.mu.Lock()
			for i, p := range g.pending {
				if p == w { // not taken yet: leave without a trace
					g.pending = append(g.pending[:i], g.pending[i+1:]...)
					g.mu.Unlock()
					return ctx.Err()
				}
			}
			g.mu.Unlock()
			// Taken by a leader: its outcome is what happened to c.
			if lead := <-w.wake; !lead {
				return nil
			}
		}
		// Leading now: the previous leader left busy set and handed over.
		g.mu.Lock()
	}
	g.busy = true
	batch := []*waiter[C]{w}
	if n := min(len(g.pending), g.max-1); n > 0 {
		batch = append(batch, g.pending[:n]...)
		g.pending = append(g.pending[:0], g.pending[n:]...)
	}
	g.mu.Unlock()

	calls := make([]C, len(batch))
	for i, b := range batch {
		calls[i] = b.c
	}
	cctx := ctx
	if len(calls) > 1 {
		cctx = context.WithoutCancel(ctx)
	}
	g.commit(cctx, calls)

	g.mu.Lock()
	if len(g.pending) > 0 {
		next := g.pending[0]
		g.pending = g.pending[1:]
		g.mu.Unlock()
		next.wake <- true
	} else {
		g.busy = false
		g.mu.Unlock()
	}
	for _, o := range batch[1:] {
		o.wake <- false
	}
	return nil
}

// Call is one caller's tasks and, once committed, their results or the
// error that stopped them: the call type of drivers whose batches can be
// concatenated and stored as one.
type Call[T, R any] struct {
	Tasks   []T
	Results []R
	Err     error
}

// Merged stores the tasks of every call of batch with one store, in order,
// and hands each call its slice of the results. If the shared store fails
// and alone says the failure may be of one call's making, each call is
// stored again by itself, so one caller's bad task cannot fail another's;
// any other failure is every call's.
func Merged[T, R any](batch []*Call[T, R], store func([]T) ([]R, error), alone func(error) bool) {
	if len(batch) == 1 {
		batch[0].Results, batch[0].Err = store(batch[0].Tasks)
		return
	}
	var all []T
	for _, c := range batch {
		all = append(all, c.Tasks...)
	}
	res, err := store(all)
	if err != nil && alone(err) {
		for _, c := range batch {
			c.Results, c.Err = store(c.Tasks)
		}
		return
	}
	if err == nil && len(res) != len(all) {
		err = fmt.Errorf("groupcommit: %d results for %d tasks", len(res), len(all))
	}
	for _, c := range batch {
		if err != nil {
			c.Err = err
			continue
		}
		c.Results, res = res[:len(c.Tasks):len(c.Tasks)], res[len(c.Tasks):]
	}
}
