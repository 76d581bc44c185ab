package sim

import (
	"sort"
	"time"
)

// Bound is the clairvoyant lower bound on worker-seconds for a trace.
//
// Every task starts the instant it arrives (zero wait), so n(t) tasks run
// at time t and at least r(t) = ceil(n(t)/C) workers must be ready. Think
// of the fleet as levels: level k is "the k-th worker", needed exactly when
// r(t) ≥ k. An oracle that knows the future pays, per level:
//
//   - the time the level is needed (Busy = ∫ r(t) dt summed over levels);
//   - one start-up s for the level's first use (Startups = s × Levels);
//   - for every gap g between two uses of the level, min(g, s): keep the
//     worker idle through a gap shorter than a start-up, stop it and launch
//     a new one (ready just in time) otherwise (Bridges).
//
// Bound = Busy + Startups + Bridges. It is the exact optimum of a relaxed
// problem (tasks may move between workers, start-up is the only cost of a
// launch), so no real policy can do better at zero wait; its levels are
// nested, so the per-level choices form a valid fleet.
type Bound struct {
	WorkerSeconds float64 `json:"worker_s"`
	Busy          float64 `json:"busy_s"`     // ∫ r(t) dt
	Startups      float64 `json:"startups_s"` // s × launches
	Bridges       float64 `json:"bridges_s"`  // idle gaps kept because shorter than s
	Launches      int     `json:"launches"`
	Peak          int     `json:"peak"` // max r(t): the fleet always-on needs
}

// ClairvoyantBound computes Bound for tasks with c slots per worker and
// start-up s.
func ClairvoyantBound(tasks []Task, c int, s time.Duration) Bound {
	type edge struct {
		at    time.Duration
		delta int
	}
	edges := make([]edge, 0, 2*len(tasks))
	for _, t := range tasks {
		edges = append(edges, edge{t.Arrival, +1}, edge{t.Arrival + t.Duration, -1})
	}
	// Ends before starts at the same instant: a slot freed at t serves a
	// task arriving at t.
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta
	})
	var b Bound
	var busy, bridges time.Duration
	var since, lastEnd []time.Duration // per level k-1
	n, r := 0, 0
	for i := 0; i < len(edges); {
		at := edges[i].at
		for ; i < len(edges) && edges[i].at == at; i++ {
			n += edges[i].delta
		}
		nr := (n + c - 1) / c
		for k := r; k < nr; k++ { // levels k+1..nr start
			if k == len(since) {
				since, lastEnd = append(since, 0), append(lastEnd, -1)
				b.Launches++
			} else if gap := at - lastEnd[k]; gap < s {
				bridges += gap
			} else {
				b.Launches++
			}
			since[k] = at
		}
		for k := nr; k < r; k++ { // levels nr+1..r end
			busy += at - since[k]
			lastEnd[k] = at
		}
		r = nr
		b.Peak = max(b.Peak, r)
	}
	b.Busy = busy.Seconds()
	b.Bridges = bridges.Seconds()
	b.Startups = float64(b.Launches) * s.Seconds()
	b.WorkerSeconds = b.Busy + b.Startups + b.Bridges
	return b
}
