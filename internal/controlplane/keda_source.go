package controlplane

import (
	"context"
	"sync"
	"time"
)

// PoolLoad is a pool's work as an external autoscaler (KEDA) scales on it.
type PoolLoad struct {
	// Queued counts queued and due scheduled tasks of the pool's queues;
	// InFlight the running ones. KEDA's own list scalers see only the
	// first, which is why they scale in under busy workers.
	Queued, InFlight int64
	// Concurrency is each worker's number of task slots.
	Concurrency int
}

// PoolLoad reads a pool's counts, reusing queue counts no older than
// maxAge; ok is false for an unknown pool.
func (s *Replica) PoolLoad(ctx context.Context, pool string, maxAge time.Duration) (load PoolLoad, ok bool, err error) {
	p := s.pool(pool)
	if p == nil {
		return PoolLoad{}, false, nil
	}
	stats, err := s.stats.get(ctx, maxAge)
	if err != nil {
		return PoolLoad{}, true, err
	}
	load.Concurrency = p.cfg.Concurrency
	for _, q := range stats {
		if p.serves(q.Name) {
			load.Queued += q.Queued + q.DueScheduled
			load.InFlight += q.InFlight
		}
	}
	return load, true, nil
}

// enqueueHooks are called on every enqueue notification for a pool's
// queue, on every replica (not only the leader): KEDA may ask any of them.
type enqueueHooks struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(pool string)
}

// OnEnqueue registers fn to be called with a pool's name the moment an
// enqueue notification for one of its queues arrives: the push that wakes
// an external autoscaler without a poll. fn runs on the notification
// goroutine and must not block. remove unregisters it.
func (s *Replica) OnEnqueue(fn func(pool string)) (remove func()) {
	h := &s.enqueueHooks
	h.mu.Lock()
	if h.fns == nil {
		h.fns = map[int]func(string){}
	}
	id := h.next
	h.next++
	h.fns[id] = fn
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.fns, id)
		h.mu.Unlock()
	}
}

func (s *Replica) enqueued(pool string) {
	h := &s.enqueueHooks
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, fn := range h.fns {
		fn(pool)
	}
}
