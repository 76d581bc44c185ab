package ebb

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
)

// completeBatchMax caps one Complete call so a single broker script stays
// short.
const completeBatchMax = 1000

// completer stores outcomes in batches. Whatever accumulates while a batch
// is in flight goes out in the next, so batches grow with load and a lone
// completion is never held back waiting for company.
type completer struct {
	w       *Worker
	mu      sync.Mutex
	pending []ebbdriver.Completion
	slots   []bool // per pending completion: it holds a worker slot
	kick    chan struct{}
	stopped chan struct{} // closed by stop
	done    chan struct{} // closed when run returns
}

func newCompleter(w *Worker) *completer {
	return &completer{w: w, kick: make(chan struct{}, 1), stopped: make(chan struct{}), done: make(chan struct{})}
}

func (c *completer) submit(comp ebbdriver.Completion) { c.add(comp, false) }

// submitHoldingSlot queues the outcome of a handler run whose worker slot is
// released only once the outcome is stored.
func (c *completer) submitHoldingSlot(comp ebbdriver.Completion) { c.add(comp, true) }

func (c *completer) add(comp ebbdriver.Completion, slot bool) {
	c.mu.Lock()
	c.pending = append(c.pending, comp)
	c.slots = append(c.slots, slot)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// stop flushes what is pending and waits for run to return. Outcomes that
// cannot be stored within the flush deadline are left to lease expiry: the
// tasks run again elsewhere, nothing is lost.
func (c *completer) stop() {
	close(c.stopped)
	<-c.done
}

// completeFlushers is how many Complete calls may be in flight at once: while
// one batch is in the broker, the next accumulates and goes out on another
// connection, so the slots it holds free up sooner.
const completeFlushers = 2

func (c *completer) run(ctx context.Context) {
	defer close(c.done)
	var wg sync.WaitGroup
	for range completeFlushers {
		wg.Go(func() { c.flushLoop(ctx) })
	}
	wg.Wait()
}

func (c *completer) flushLoop(ctx context.Context) {
	backoff := newBackoff(50*time.Millisecond, 2*time.Second)
	// flushDeadline is in real time, not on the worker's clock: a stopped
	// test clock must not keep an exiting worker retrying forever.
	var flushDeadline time.Time
	var batch []ebbdriver.Completion
	var slots []bool
	for {
		if len(batch) == 0 {
			c.mu.Lock()
			n := min(len(c.pending), completeBatchMax)
			batch = append(batch, c.pending[:n]...)
			slots = append(slots, c.slots[:n]...)
			c.pending = append(c.pending[:0], c.pending[n:]...)
			c.slots = append(c.slots[:0], c.slots[n:]...)
			c.mu.Unlock()
		}
		if len(batch) == 0 {
			select {
			case <-c.kick:
				continue
			case <-c.stopped:
				c.mu.Lock()
				empty := len(c.pending) == 0
				c.mu.Unlock()
				if empty {
					return
				}
				continue
			}
		}
		results, err := c.w.driver.Complete(ctx, batch)
		if err != nil {
			select {
			case <-c.stopped:
				if flushDeadline.IsZero() {
					flushDeadline = time.Now().Add(5 * time.Second)
				}
				if time.Now().After(flushDeadline) {
					c.w.logger.Error("could not store task outcomes before exit; their leases will expire and they will run again",
						"count", len(batch), "error", err)
					return
				}
			default:
			}
			d := backoff.next()
			c.w.logger.Warn("storing task outcomes failed; retrying", "count", len(batch), "error", err, "retry_in", d)
			time.Sleep(d)
			continue
		}
		backoff.reset()
		c.w.inflightMu.Lock()
		for i, comp := range batch {
			if t := c.w.inflight[comp.ID]; t != nil && t.token == comp.LeaseToken {
				delete(c.w.inflight, comp.ID)
			}
			if i < len(results) && results[i] != nil {
				c.rejected(comp, results[i])
			}
		}
		c.w.inflightMu.Unlock()
		for _, held := range slots {
			if held {
				c.w.release(1)
			}
		}
		batch, slots = batch[:0], slots[:0]
	}
}

// rejected says why the broker refused an outcome. The two refusals call for
// different actions: a lost lease is routine (the task was rescued after a
// missed heartbeat and runs elsewhere, or already finished), while a task
// that no longer exists means someone deleted it or the broker lost its data
// (a Redis restarted without persistence, a replaced SQLite file), which an
// operator must hear about.
func (c *completer) rejected(comp ebbdriver.Completion, err error) {
	switch {
	case errors.Is(err, ErrTaskNotFound):
		c.w.logger.Error("task outcome not stored: the task no longer exists in the broker (was it deleted, or did the broker lose its data?)",
			"id", comp.ID, "queue", comp.Queue, "outcome", outcomeName(comp.Outcome))
	case errors.Is(err, ErrLeaseLost):
		c.w.logger.Warn("task outcome not stored: lease lost (its lease expired and it moved to another worker, or it already finished)",
			"id", comp.ID, "queue", comp.Queue)
	default:
		c.w.logger.Error("task outcome rejected", "id", comp.ID, "queue", comp.Queue, "error", err)
	}
}

// outcomeName says which outcome was lost, for the log.
func outcomeName(o ebbdriver.Outcome) string {
	switch o {
	case ebbdriver.OutcomeSucceeded:
		return "succeeded"
	case ebbdriver.OutcomeRetry:
		return "retry"
	case ebbdriver.OutcomeDead:
		return "dead"
	case ebbdriver.OutcomeCancelled:
		return "cancelled"
	case ebbdriver.OutcomeHandBack:
		return "hand back"
	}
	return "unknown"
}
