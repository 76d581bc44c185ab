package controlplane

import (
	"maps"
	"sync"
)

// counters count what this replica did, for the HTTP surface's metrics. They
// are plain numbers here so the control plane does not depend on a metrics
// library; the metrics collector reads them at scrape time.
type counters struct {
	mu        sync.Mutex
	decisions map[DecisionKey]int64
	beatTicks map[BeatTickKey]int64
}

// DecisionKey names a counter of applied scaling decisions.
type DecisionKey struct{ Pool, Action string }

// BeatTickKey names a counter of schedule ticks: Result is "enqueued", or
// "duplicate" when the tick's task already existed (fired elsewhere).
type BeatTickKey struct{ Schedule, Result string }

// Counters are a snapshot of what this replica did since it started.
type Counters struct {
	Decisions map[DecisionKey]int64
	BeatTicks map[BeatTickKey]int64
}

func (c *counters) init() {
	c.decisions = map[DecisionKey]int64{}
	c.beatTicks = map[BeatTickKey]int64{}
}

func (c *counters) decision(pool, action string) {
	c.mu.Lock()
	c.decisions[DecisionKey{pool, action}]++
	c.mu.Unlock()
}

func (c *counters) beatTick(schedule string, duplicate bool) {
	result := "enqueued"
	if duplicate {
		result = "duplicate"
	}
	c.mu.Lock()
	c.beatTicks[BeatTickKey{schedule, result}]++
	c.mu.Unlock()
}

// Counters returns what this replica applied and fired since it started.
func (s *Replica) Counters() Counters {
	s.counters.mu.Lock()
	defer s.counters.mu.Unlock()
	return Counters{Decisions: maps.Clone(s.counters.decisions), BeatTicks: maps.Clone(s.counters.beatTicks)}
}
