package controlplane

import (
	"context"
	"sync"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// Point is one sample of a pool over time: the picture of a pool breathing
// from zero to N and back that the dashboard charts.
type Point struct {
	At       time.Time `json:"at"`
	Queued   int64     `json:"queued"`
	InFlight int64     `json:"in_flight"`
	Workers  int       `json:"workers"`
	Busy     int       `json:"busy"`
	Desired  int       `json:"desired"`
}

// Timeline keeps a pool's recent samples in memory. It is per replica and
// starts empty on restart: long-term history belongs in Prometheus (the
// ebb_pool_* metrics); the timeline only needs to show the last hour at a
// glance without a time-series database.
type timeline struct {
	mu     sync.Mutex
	points []Point // ring, oldest at head once full
	head   int
}

const (
	// TimelineSpan is how far back the pool chart can look.
	TimelineSpan = time.Hour
	// timelineStep is the finest resolution kept: samples closer than this
	// to the previous one replace it, so a burst of kicks costs no memory.
	timelineStep = time.Second
	timelineCap  = int(TimelineSpan / timelineStep)
)

func newTimeline() *timeline { return &timeline{points: make([]Point, 0, 64)} }

// add records a sample; one within timelineStep of the last replaces it.
func (t *timeline) add(p Point) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.len()
	if n > 0 {
		last := t.at(n - 1)
		if p.At.Sub(last.At) < timelineStep && !p.At.Before(last.At) {
			// Keep the first timestamp of the second so steps line up.
			p.At = last.At
			t.set(n-1, p)
			return
		}
		if p.At.Before(last.At) {
			return
		}
	}
	if len(t.points) < timelineCap {
		t.points = append(t.points, p)
		return
	}
	t.points[t.head] = p
	t.head = (t.head + 1) % timelineCap
}

// addIfChanged records a sample only if it differs from the last one in
// anything but time: charts draw steps, so repeats add nothing.
func (t *timeline) addIfChanged(p Point) {
	t.mu.Lock()
	if n := t.len(); n > 0 {
		last := t.at(n - 1)
		last.At = p.At
		if last == p {
			t.mu.Unlock()
			return
		}
	}
	t.mu.Unlock()
	t.add(p)
}

// since returns samples at or after from, oldest first, plus the last sample
// before from (so a chart can draw the level the window opens with).
func (t *timeline) since(from time.Time) []Point {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.len()
	out := make([]Point, 0, n)
	for i := range n {
		p := t.at(i)
		if p.At.Before(from) {
			out = append(out[:0], p)
			continue
		}
		out = append(out, p)
	}
	return out
}

func (t *timeline) len() int { return len(t.points) }

func (t *timeline) at(i int) Point { return t.points[(t.head+i)%len(t.points)] }

func (t *timeline) set(i int, p Point) { t.points[(t.head+i)%len(t.points)] = p }

// SamplePools reads the queue counts (shared through the stats cache) and
// the worker registry, and records a timeline point per pool, in the order
// of Pools, and returns them. The leader's reconcile records points
// too; this keeps charts moving on replicas that do not lead and while a
// pool at zero is not being reconciled, at no cost while no page is open.
func (s *Replica) SamplePools(ctx context.Context, now time.Time) ([]ebbtype.QueueStats, []Point, error) {
	stats, err := s.stats.get(ctx, 900*time.Millisecond)
	if err != nil {
		return nil, nil, err
	}
	workers, err := s.workers.get(ctx, now, 900*time.Millisecond)
	if err != nil {
		return stats, nil, err
	}
	points := make([]Point, len(s.pools))
	for i, p := range s.pools {
		pt := Point{At: now, Desired: -1}
		for _, q := range stats {
			if p.serves(q.Name) {
				pt.Queued += q.Queued + q.DueScheduled
				pt.InFlight += q.InFlight
			}
		}
		for _, w := range workers {
			if w.Pool == p.name && !w.Draining {
				pt.Workers++
				if w.Busy > 0 {
					pt.Busy++
				}
			}
		}
		if s.leading.Load() {
			pt.Desired = p.snapshot().Desired
		}
		p.timeline.addIfChanged(pt)
		points[i] = pt
	}
	return stats, points, nil
}

// RecordPoint adds a sample to a pool's timeline, as a scaling pass does.
// It reports false for an unknown pool. (The HTTP surface's tests draw
// charts from hand-made samples.)
func (s *Replica) RecordPoint(pool string, pt Point) bool {
	p := s.pool(pool)
	if p == nil {
		return false
	}
	p.timeline.add(pt)
	return true
}
