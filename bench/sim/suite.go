package sim

import (
	"sync"
	"time"
)

// Suite is every trace at every start-up delay, plus the variants and the
// one-task-per-worker control used by the analysis.
type Suite struct {
	Seed     uint64
	Traces   []Trace
	Cases    []Case
	Controls []Case // OnePerWorker(bursty), variants only
}

// Charted names the runs whose timelines are kept for charts.
var Charted = []struct {
	Trace   string
	Startup time.Duration
	Window  time.Duration // from the trace's start
}{
	{"bursty", 45 * time.Second, 2 * time.Hour},
	{"rare-long", 45 * time.Second, 24 * time.Hour},
}

func charted(trace string, startup time.Duration) bool {
	for _, c := range Charted {
		if c.Trace == trace && c.Startup == startup {
			return true
		}
	}
	return false
}

// RunSuite runs everything for a seed. Runs are independent, so they go in
// parallel; each is deterministic, so the result does not depend on
// scheduling.
func RunSuite(seed uint64) Suite { return runSuite(seed, Traces(seed)) }

func runSuite(seed uint64, traces []Trace) Suite {
	s := Suite{Seed: seed, Traces: traces}
	type job struct {
		tr      Trace
		startup time.Duration
		control bool
	}
	var jobs []job
	for _, tr := range s.Traces {
		for _, d := range Startups {
			jobs = append(jobs, job{tr, d, false})
		}
	}
	for _, tr := range s.Traces {
		if tr.Name == "bursty" {
			for _, d := range Startups {
				jobs = append(jobs, job{OnePerWorker(tr), d, true})
			}
		}
	}
	out := make([]Case, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, j := range jobs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if j.control {
				b := ClairvoyantBound(j.tr.Tasks, j.tr.Concurrency, j.startup)
				out[i] = Case{
					Trace: j.tr.Name, Title: j.tr.Title, Startup: j.startup, Tasks: len(j.tr.Tasks),
					Concurrency: j.tr.Concurrency, MaxWait: j.tr.MaxWait, Peak: max(b.Peak, 1), Bound: b,
					Variants: RunVariants(j.tr, j.startup, seed, b),
				}
				return
			}
			c := Run(j.tr, j.startup, seed, charted(j.tr.Name, j.startup))
			c.Variants = RunVariants(j.tr, j.startup, seed, c.Bound)
			out[i] = c
		})
	}
	wg.Wait()
	for i, j := range jobs {
		if j.control {
			s.Controls = append(s.Controls, out[i])
		} else {
			s.Cases = append(s.Cases, out[i])
		}
	}
	return s
}
