package sim

import (
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// ShortBursty is a few minutes of on/off traffic for replaying against a
// real server (bench/cmd/sim-reality): short enough to run in wall time,
// with gaps long enough that the pool goes back to zero between bursts, so
// every burst costs scale-ups, drains and a cold start.
func ShortBursty(seed uint64) Trace {
	return generate(seed, 5, Trace{
		Name: "short-bursty", Title: "Short bursty",
		Description: "Three minutes of on/off Poisson traffic: quiet gaps of 6–20 s, then bursts of 8–20 s at 0.5–2 tasks/s; tasks run an exponential 3 s on average (0.5 s to 12 s), 2 per worker; plus one spike of 12 tasks of 4–8 s within a second, more than 4 workers hold.",
		Horizon:     3 * time.Minute, Concurrency: 2,
	}, func(r *rand.Rand, t *Trace) {
		now := uniform(r, 2*time.Second, 5*time.Second)
		for now < t.Horizon {
			end := min(now+uniform(r, 8*time.Second, 20*time.Second), t.Horizon)
			gap := time.Duration(float64(time.Second) / (0.5 + 1.5*r.Float64()))
			// The burst's first task arrives at its start, so every burst
			// wakes the pool at a known time.
			add := func(at time.Duration) {
				d := min(max(exp(r, 3*time.Second), 500*time.Millisecond), 12*time.Second)
				t.Tasks = append(t.Tasks, Task{Arrival: ms(at), Duration: ms(d)})
			}
			add(now)
			poisson(r, gap, now, end, add)
			now = end + uniform(r, 6*time.Second, 20*time.Second)
		}
		// One spike beyond max workers × concurrency, so tasks also queue
		// behind a full pool, not only behind a cold start.
		at := uniform(r, time.Minute, 2*time.Minute)
		for range 12 {
			t.Tasks = append(t.Tasks, Task{Arrival: ms(at + uniform(r, 0, time.Second)), Duration: ms(uniform(r, 4*time.Second, 8*time.Second))})
		}
	})
}

// Realized is tr with the arrivals a real run achieved (by task ID), so the
// simulator replays what the server saw rather than what was planned.
func Realized(tr Trace, arrivals map[int]time.Duration) Trace {
	out := tr
	out.Tasks = make([]Task, 0, len(tr.Tasks))
	out.MaxDuration = 0
	for _, t := range tr.Tasks {
		if at, ok := arrivals[t.ID]; ok {
			t.Arrival = at
		}
		out.Tasks = append(out.Tasks, t)
	}
	return finish(out)
}

// Replay is one run of ebb's default policy on a trace, with the figures a
// real server's records also give.
type Replay struct {
	WorkerSeconds float64
	// Waits are arrival → start in seconds, sorted; +Inf for tasks that
	// never completed.
	Waits       []float64
	ScaleUps    int // decisions that launched workers
	ScaleDowns  int // decisions that drained workers
	Launches    int
	Drains      int
	Interrupted int
	PeakWorkers int
	// Spans are the workers' launch → exit, from the trace's start.
	Spans [][2]time.Duration
}

// ReplayEbb runs ebb with the server's default policy (max workers, the
// trace's concurrency and max wait, delays derived from the start-up) and
// packing fetch, workers taking startup from launch to their first fetch.
func ReplayEbb(tr Trace, maxWorkers int, startup time.Duration, seed uint64) Replay {
	c := newEbb(EbbDefaultPolicy(maxWorkers, tr.Concurrency, tr.MaxWait), startup)
	cfg := fleetConfig{Pack: true, Startup: startup, Concurrency: tr.Concurrency, MaxDeliveries: math.MaxInt}
	f := newFleet(tr, cfg, c, seed, false)
	n := len(f.tasks)
	f.run(func() bool { return f.resolved == n && len(f.live) == 0 }, tr.Horizon+overtime)

	r := Replay{
		WorkerSeconds: f.workerSeconds(), Waits: f.waits(),
		Launches: f.launches, Interrupted: f.interrupted, PeakWorkers: f.maxWorkers,
	}
	sort.Float64s(r.Waits)
	// One decision launches its workers, or drains its idle ones, at one
	// instant (a drained idle worker exits at once), so distinct instants
	// count decisions without reaching into the controller.
	ups, downs := map[time.Duration]bool{}, map[time.Duration]bool{}
	for _, w := range f.workers {
		ups[w.launchedAt] = true
		if w.state == wExited { // ebb only drains: any exit is one
			downs[w.exitedAt] = true
			r.Drains++
		}
		r.Spans = append(r.Spans, [2]time.Duration{w.launchedAt, w.exitedAt})
	}
	r.ScaleUps, r.ScaleDowns = len(ups), len(downs)
	return r
}

// Percentile is the nearest-rank percentile the simulator reports, of
// sorted values.
func Percentile(sorted []float64, q float64) float64 { return percentile(sorted, q) }
