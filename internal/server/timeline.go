package server

import (
	"sync"
	"time"
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
	// timelineSpan is how far back the pool chart can look.
	timelineSpan = time.Hour
	// timelineStep is the finest resolution kept: samples closer than this
	// to the previous one replace it, so a burst of kicks costs no memory.
	timelineStep = time.Second
	timelineCap  = int(timelineSpan / timelineStep)
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
