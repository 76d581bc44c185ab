package ebb

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
)

// fetchLoop claims tasks while there are free slots and starts a handler for
// each. It never sleep-polls: when a fetch comes back short it waits for a
// broker notification, the next scheduled task's due time, or the backstop
// poll, whichever comes first. stop ends the loop; broker calls use bg so a
// fetch in progress is never abandoned half-way (its tasks would sit leased
// by nobody until the lease expired).
func (w *Worker) fetchLoop(stop, bg context.Context) {
	backoff := newBackoff(50*time.Millisecond, 5*time.Second)
	lowWater := max(1, min(w.config.Concurrency/4, w.config.FetchBatchMax))
	backlog := false
	for {
		// Take one slot (blocking), then as many more as are free. With a
		// backlog, wait for a few slots so each fetch is a real batch instead
		// of one round trip per freed slot.
		select {
		case w.sem <- struct{}{}:
		case <-stop.Done():
			return
		}
		n := 1
		if backlog && n < lowWater {
			timer := time.NewTimer(time.Millisecond)
		collect:
			for n < lowWater {
				select {
				case w.sem <- struct{}{}:
					n++
				case <-timer.C:
					break collect
				case <-stop.Done():
					break collect
				}
			}
			timer.Stop()
		}
	grab:
		for n < w.config.FetchBatchMax {
			select {
			case w.sem <- struct{}{}:
				n++
			default:
				break grab
			}
		}

		token := w.config.ID + ":" + strconv.FormatUint(w.fetchSeq.Add(1), 36)
		params := ebbdriver.FetchParams{
			Queues:        w.queueOrder(),
			Limit:         n,
			WorkerID:      w.config.ID,
			LeaseToken:    token,
			LeaseDuration: w.config.LeaseDuration,
			Now:           w.clock.Now(),
		}
		res, err := w.driver.Fetch(bg, params)
		if err != nil {
			res, err = w.refetch(stop, bg, params, err, backoff)
		}
		if err != nil {
			w.release(n)
			if stop.Err() != nil {
				return
			}
			continue
		}
		backoff.reset()
		w.release(n - len(res.Tasks))
		if stop.Err() != nil {
			// Claimed while shutting down: give them back untouched.
			w.handBack(res.Tasks)
			w.release(len(res.Tasks))
			return
		}
		for _, rec := range res.Tasks {
			w.start(rec)
		}
		backlog = len(res.Tasks) == n
		if backlog {
			continue
		}
		wait := w.config.PollInterval
		if !res.NextDueAt.IsZero() {
			if d := clock.Until(w.clock, res.NextDueAt); d < wait {
				wait = max(d, 0)
			}
		}
		if len(res.Tasks) > 0 {
			// A short batch may still leave tasks that became ready since;
			// look again at once if a notification is pending, otherwise wait.
			wait = min(wait, time.Millisecond)
		}
		timer := time.NewTimer(wait)
		woken := false
		select {
		case <-w.wake:
			woken = true
		case <-timer.C:
		case <-stop.Done():
			timer.Stop()
			return
		}
		timer.Stop()
		if woken {
			// Only a notification asks for a fresh view of the peers: on
			// the backstop poll or a due time alone an idle worker would
			// read the registry every poll. The delay below still applies,
			// on the view it has: a due task wakes every worker at once.
			w.wantPeers()
		}
		if d := w.packDelay(); d > 0 {
			// Let fuller workers claim first (see WorkerConfig.PackDelay).
			// A notification meanwhile changes nothing: the fetch below
			// claims whatever they left.
			timer := time.NewTimer(d)
			select {
			case <-timer.C:
			case <-stop.Done():
				timer.Stop()
				return
			}
		}
	}
}

// refetch repeats a failed fetch with Retry and the same token, time and
// lease, backing off between attempts. The broker may have stored the
// claims and only the reply been lost (Redis killed mid-reply): the repeat
// returns them, so they run within seconds instead of sitting leased to
// this worker, which never heard of them, until the lease runs out. It
// gives up once a third of the lease has passed (the claims' leases are
// counted from the first attempt), or when stop ends; the next fetch then
// takes a new token.
func (w *Worker) refetch(stop, bg context.Context, p ebbdriver.FetchParams, err error, b *backoff) (*ebbdriver.FetchResult, error) {
	p.Retry = true
	giveUp := p.Now.Add(p.LeaseDuration / 3)
	for {
		d := b.next()
		w.logger.Warn("fetch failed; retrying", "error", err, "retry_in", d)
		if !clock.Sleep(stop, d) || w.clock.Now().After(giveUp) {
			return nil, err
		}
		res, rerr := w.driver.Fetch(bg, p)
		if rerr == nil {
			return res, nil
		}
		err = rerr
	}
}

func (w *Worker) release(n int) {
	for range n {
		<-w.sem
	}
}

func (w *Worker) handBack(tasks []*ebbtype.TaskInfo) {
	now := w.clock.Now()
	for _, rec := range tasks {
		w.inflightMu.Lock()
		w.inflight[rec.ID] = &inflightTask{queue: rec.Queue, id: rec.ID, token: rec.LeaseToken, cancel: func(error) {}, done: true}
		w.inflightMu.Unlock()
		w.completer.submit(ebbdriver.Completion{Queue: rec.Queue, ID: rec.ID, LeaseToken: rec.LeaseToken, Outcome: ebbdriver.OutcomeHandBack, Now: now})
	}
}

// queueOrder is the configured order, or a weighted random permutation.
func (w *Worker) queueOrder() []string {
	if !w.weighted || len(w.queues) < 2 {
		return w.queues
	}
	left := append([]QueueConfig(nil), w.config.Queues...)
	out := make([]string, 0, len(left))
	for len(left) > 0 {
		total := 0
		for _, q := range left {
			total += q.Weight
		}
		r := rand.IntN(total)
		for i, q := range left {
			if r < q.Weight {
				out = append(out, q.Name)
				left = append(left[:i], left[i+1:]...)
				break
			}
			r -= q.Weight
		}
	}
	return out
}

// poke wakes the fetch loop if it is waiting.
func (w *Worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{min: lo, max: hi} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }
