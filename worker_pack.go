package ebb

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/ebbq/ebb/internal/clock"
)

// PackDelayDefault is the longest a worker defers a fetch to fuller peers
// (see WorkerConfig.PackDelay). It is well above the spread of one
// notification reaching several workers and one fetch round trip on a
// loaded host, so the fullest worker's claim lands first, and small beside
// any task worth autoscaling.
const PackDelayDefault = 5 * time.Millisecond

// peerRefreshMinGap bounds the registry reads packing costs: at most one per
// second per worker, and only while notifications arrive, so an idle worker
// reads nothing.
const peerRefreshMinGap = time.Second

// peer is what packing needs of another worker of the same queues: its room
// and its age, as the registry last showed them.
type peer struct {
	id          string
	busy, slots int
	startedAt   time.Time
}

// peerView is the registry read behind packing decisions.
type peerView struct {
	peers []peer
	// startedAt is this worker's start as the registry stores it: ties are
	// broken on the stored times of both sides, since a broker may keep
	// them coarser than the clock (comparing a stored time with an exact
	// one would make each of two workers think the other older).
	startedAt time.Time
}

// packing is the worker's state for packing its work onto the fullest
// worker.
type packing struct {
	view atomic.Pointer[peerView]
	kick chan struct{}
}

// packDelay is how long the fetch loop waits, after a wake-up, before it
// fetches: zero when packing is off, when no other worker of its queues has
// room (a worker alone pays nothing), or when this worker is the oldest of
// those with room; otherwise PackDelay times its rank by age among them over
// the number behind the oldest, so older workers claim first and the
// newest, which the autoscaler drains first, run dry. The rank rests on
// start times, which never change, rather than on busy counts, which the
// registry shows up to a heartbeat late: two workers each seeing the
// other's stale count would both think themselves the fullest. Claiming in
// a fixed order is first-fit packing, and it fills the oldest workers the
// way "fullest first" would. A stale view costs at most PackDelay of pickup
// or one task placed as without packing, never a lost wake-up.
func (w *Worker) packDelay() time.Duration {
	if w.config.PackDelay <= 0 {
		return 0
	}
	v := w.pack.view.Load()
	if v == nil || len(v.peers) == 0 {
		return 0
	}
	rank := 0
	for _, p := range v.peers {
		if older(p.startedAt, p.id, v.startedAt, w.config.ID) {
			rank++
		}
	}
	return time.Duration(int64(w.config.PackDelay) * int64(rank) / int64(len(v.peers)))
}

func older(at time.Time, id string, than time.Time, thanID string) bool {
	if !at.Equal(than) {
		return at.Before(than)
	}
	return id < thanID
}

// wantPeers asks for a fresh registry read, without waiting for it.
func (w *Worker) wantPeers() {
	if w.config.PackDelay <= 0 {
		return
	}
	select {
	case w.pack.kick <- struct{}{}:
	default:
	}
}

// watchPeers keeps the view of the other workers of this worker's queues
// (read first by Run, before the first fetch), refreshing it on request
// (each wake-up) at most once per second.
func (w *Worker) watchPeers(ctx context.Context) {
	if w.config.PackDelay <= 0 {
		return
	}
	last := w.clock.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.pack.kick:
		}
		// Clamped, as the heartbeat's edge gap: a clock set back must not
		// hold the next read back for longer.
		if !clock.Sleep(ctx, min(peerRefreshMinGap-clock.Since(w.clock, last), peerRefreshMinGap)) {
			return
		}
		w.readPeers(ctx)
		last = w.clock.Now()
	}
}

func (w *Worker) readPeers(ctx context.Context) {
	if w.config.PackDelay <= 0 {
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, w.controlCallBound())
	defer cancel()
	now := w.clock.Now()
	list, err := w.driver.WorkerList(callCtx, now)
	if err != nil {
		// Packing is an optimisation: keep the last view and let the next
		// wake-up ask again.
		if ctx.Err() == nil {
			w.logger.Debug("packing: cannot read the worker registry", "error", err)
		}
		return
	}
	mine := make(map[string]bool, len(w.queues))
	for _, q := range w.queues {
		mine[q] = true
	}
	stale := 3 * w.config.HeartbeatInterval
	v := &peerView{startedAt: w.startedAt}
	for _, info := range list {
		if info.ID == w.config.ID {
			v.startedAt = info.StartedAt
			continue
		}
		if info.Draining || info.Concurrency <= 0 || info.Busy >= info.Concurrency {
			continue
		}
		if !info.HeartbeatAt.IsZero() && now.Sub(info.HeartbeatAt) > stale {
			continue
		}
		shares := false
		for _, q := range info.Queues {
			if mine[q] {
				shares = true
				break
			}
		}
		if shares {
			v.peers = append(v.peers, peer{id: info.ID, busy: max(info.Busy, 0), slots: info.Concurrency,
				startedAt: info.StartedAt})
		}
	}
	w.pack.view.Store(v)
}
