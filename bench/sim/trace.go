package sim

import (
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// Task is one arrival of a trace.
type Task struct {
	ID       int
	Arrival  time.Duration // since the trace began
	Duration time.Duration // run time once it starts
}

// Trace is a workload: its tasks sorted by arrival, and the pool shape it
// calls for.
type Trace struct {
	Name        string // short, used in file names
	Title       string
	Description string // one sentence for the report
	Horizon     time.Duration
	// Concurrency is each worker's number of slots for this workload.
	Concurrency int
	// MaxWait is ebb's age SLO for this workload: the server default unless
	// the workload states its own tolerance.
	MaxWait     time.Duration
	MaxWaitWhy  string
	Tasks       []Task
	MaxDuration time.Duration
}

// Traces returns the four workloads for a seed. Each has its own random
// stream, so changing one generator does not reshuffle the others.
func Traces(seed uint64) []Trace {
	return []Trace{Bursty(seed), Diurnal(seed), RareLong(seed), Spikes(seed)}
}

func newRand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

// exp draws an exponential variate with the given mean.
func exp(r *rand.Rand, mean time.Duration) time.Duration {
	return time.Duration(r.ExpFloat64() * float64(mean))
}

func uniform(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Float64()*float64(hi-lo))
}

// ms keeps generated times on whole milliseconds so tables and tests read
// cleanly.
func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// poisson calls add at each arrival of a Poisson process with the given
// mean gap, after from and before until.
func poisson(r *rand.Rand, gap, from, until time.Duration, add func(now time.Duration)) {
	for now := from + exp(r, gap); now < until; now += exp(r, gap) {
		add(now)
	}
}

// generate draws t's tasks from its own random stream of the seed, with gen.
// A trace that states no MaxWait gets the server default.
func generate(seed, stream uint64, t Trace, gen func(r *rand.Rand, t *Trace)) Trace {
	if t.MaxWait == 0 {
		t.MaxWait, t.MaxWaitWhy = ebbMaxWaitDefault, "server default"
	}
	gen(newRand(seed, stream), &t)
	return finish(t)
}

func finish(t Trace) Trace {
	sort.SliceStable(t.Tasks, func(i, j int) bool { return t.Tasks[i].Arrival < t.Tasks[j].Arrival })
	for i := range t.Tasks {
		t.Tasks[i].ID = i
		t.MaxDuration = max(t.MaxDuration, t.Tasks[i].Duration)
	}
	return t
}

// ebbMaxWaitDefault mirrors config.MaxWaitDefault (checked by a test).
const ebbMaxWaitDefault = 30 * time.Second

// Bursty is an on/off Poisson process: quiet gaps (mean 10 min) with no
// arrivals, then bursts (mean 4 min) of 1 task/s, tasks of mean 30 s.
func Bursty(seed uint64) Trace {
	return generate(seed, 1, Trace{
		Name: "bursty", Title: "Bursty Poisson",
		Description: "Six hours of on/off Poisson traffic: quiet gaps averaging 10 minutes with no arrivals, then bursts averaging 4 minutes at 1 task/s; tasks run an exponential 30 s on average (1 s to 10 min), 10 per worker.",
		Horizon:     6 * time.Hour, Concurrency: 10,
	}, func(r *rand.Rand, t *Trace) {
		now := time.Duration(0)
		for {
			now += exp(r, 10*time.Minute)
			end := now + exp(r, 4*time.Minute)
			if now >= t.Horizon {
				break
			}
			poisson(r, time.Second, now, min(end, t.Horizon), func(now time.Duration) {
				d := min(max(exp(r, 30*time.Second), time.Second), 10*time.Minute)
				t.Tasks = append(t.Tasks, Task{Arrival: ms(now), Duration: ms(d)})
			})
			now = end
		}
	})
}

// Diurnal is a non-homogeneous Poisson process over a day whose rate follows
// a sine from 0.05 task/s at midnight to 2 tasks/s at noon.
func Diurnal(seed uint64) Trace {
	const lo, hi = 0.05, 2.0
	rate := func(at time.Duration) float64 {
		s := math.Sin(math.Pi * at.Hours() / 24)
		return lo + (hi-lo)*s*s
	}
	return generate(seed, 2, Trace{
		Name: "diurnal", Title: "Diurnal",
		Description: "One day of Poisson traffic whose rate follows a sine from 0.05 task/s at midnight to 2 tasks/s at noon; tasks run an exponential 20 s on average (1 s to 5 min), 10 per worker.",
		Horizon:     24 * time.Hour, Concurrency: 10,
	}, func(r *rand.Rand, t *Trace) {
		// Thinning: candidates at the peak rate, each kept with rate(t)/peak.
		poisson(r, time.Duration(float64(time.Second)/hi), 0, t.Horizon, func(now time.Duration) {
			if r.Float64()*hi > rate(now) {
				return
			}
			d := min(max(exp(r, 20*time.Second), time.Second), 5*time.Minute)
			t.Tasks = append(t.Tasks, Task{Arrival: ms(now), Duration: ms(d)})
		})
	})
}

// RareLong is the seeds' workload: "a long time to process (between 15
// minutes and 1 or 2 hours)", "not predictable", heavy (one per worker), and
// "a 2 - 3 minute delay between calling the task and starting work on the
// task is acceptable".
func RareLong(seed uint64) Trace {
	return generate(seed, 3, Trace{
		Name: "rare-long", Title: "Rare long jobs",
		Description: "Three days of the seeds' workload: heavy jobs arriving as a Poisson process every 3 hours on average, each running 15 minutes to 2 hours (uniform), one per worker.",
		Horizon:     72 * time.Hour, Concurrency: 1,
		MaxWait: 2 * time.Minute, MaxWaitWhy: "the seeds: \"a 2 - 3 minute delay ... is acceptable\"",
	}, func(r *rand.Rand, t *Trace) {
		poisson(r, 3*time.Hour, 0, t.Horizon, func(now time.Duration) {
			t.Tasks = append(t.Tasks, Task{Arrival: ms(now), Duration: ms(uniform(r, 15*time.Minute, 2*time.Hour))})
		})
	})
}

// Spikes is a trickle with a few sudden floods, e.g. a nightly fan-out or a
// backfill.
func Spikes(seed uint64) Trace {
	return generate(seed, 4, Trace{
		Name: "spikes", Title: "Sudden spikes",
		Description: "Six hours of background traffic at 0.05 task/s (5–30 s tasks) with four sudden spikes of 500 tasks each within 10 s (10–60 s tasks), 10 per worker.",
		Horizon:     6 * time.Hour, Concurrency: 10,
	}, func(r *rand.Rand, t *Trace) {
		poisson(r, 20*time.Second, 0, t.Horizon, func(now time.Duration) {
			t.Tasks = append(t.Tasks, Task{Arrival: ms(now), Duration: ms(uniform(r, 5*time.Second, 30*time.Second))})
		})
		// Spikes in four equal slots of the horizon, at a random point of each,
		// so they never overlap and their timing still varies with the seed.
		slot := t.Horizon / 4
		for i := range 4 {
			at := time.Duration(i)*slot + uniform(r, 10*time.Minute, slot-10*time.Minute)
			for range 500 {
				t.Tasks = append(t.Tasks, Task{Arrival: ms(at + uniform(r, 0, 10*time.Second)), Duration: ms(uniform(r, 10*time.Second, time.Minute))})
			}
		}
	})
}
