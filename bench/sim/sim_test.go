package sim

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
	"time"
)

const sec = time.Second

// TestClairvoyantBoundByHand checks the bound on five tasks (arrival,
// duration) = A(0, 100), B(50, 100), C(300, 20), D(325, 10), E(1000, 5),
// with start-up s = 10 s.
//
// One slot per worker: n(t) = r(t) is 1 on [0,50), 2 on [50,100), 1 on
// [100,150), 0 to 300, 1 on [300,320), 0 to 325, 1 on [325,335), 0 to
// 1000, 1 on [1000,1005).
//
//   - Level 1 is needed on [0,150), [300,320), [325,335), [1000,1005):
//     150 + 20 + 10 + 5 = 185 s. Its gaps are 150 s (≥ s: stop, relaunch),
//     5 s (< s: keep it idle, 5 s) and 665 s (relaunch): 3 launches.
//   - Level 2 is needed on [50,100): 50 s, 1 launch.
//   - Bound = 185 + 50 + 4 × 10 + 5 = 280 s; peak 2.
//
// Two slots per worker: r(t) = ceil(n/2) is 1 wherever n ≥ 1, so only
// level 1: 185 + 3 × 10 + 5 = 220 s; peak 1.
//
// Start-up 0: launches and gaps cost nothing, Bound = ∫ r dt = 235 s
// (every gap now counts as a relaunch: 4 on level 1, 1 on level 2).
func TestClairvoyantBoundByHand(t *testing.T) {
	t.Parallel()
	tasks := []Task{
		{Arrival: 0, Duration: 100 * sec},
		{Arrival: 50 * sec, Duration: 100 * sec},
		{Arrival: 300 * sec, Duration: 20 * sec},
		{Arrival: 325 * sec, Duration: 10 * sec},
		{Arrival: 1000 * sec, Duration: 5 * sec},
	}
	tests := []struct {
		name string
		c    int
		s    time.Duration
		want Bound
	}{
		{"OneSlot", 1, 10 * sec, Bound{WorkerSeconds: 280, Busy: 235, Startups: 40, Bridges: 5, Launches: 4, Peak: 2}},
		{"TwoSlots", 2, 10 * sec, Bound{WorkerSeconds: 220, Busy: 185, Startups: 30, Bridges: 5, Launches: 3, Peak: 1}},
		{"NoStartup", 1, 0, Bound{WorkerSeconds: 235, Busy: 235, Startups: 0, Bridges: 0, Launches: 5, Peak: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ClairvoyantBound(tasks, tt.c, tt.s); got != tt.want {
				t.Errorf("ClairvoyantBound = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestSingleTaskMechanics follows one task through ebb's controller with
// start-up d = 1 s: it arrives at 10 s, the enqueue kick launches a worker
// at once, the worker is ready at 11 s and starts it, so the wait is d. It
// runs 100.5 s, to 111.5 s. The timer ticks every second from the kick
// (11, 12, … s); the last tick that sees it in flight is 111 s, so the
// worker is drained at the first tick one start-up (the derived idle before
// zero, measured from this launch) later, 112 s: 102 worker-seconds, one
// worker, nothing interrupted.
func TestSingleTaskMechanics(t *testing.T) {
	t.Parallel()
	tr := finish(Trace{Name: "one", Horizon: time.Minute, Concurrency: 10, MaxWait: ebbMaxWaitDefault,
		Tasks: []Task{{Arrival: 10 * sec, Duration: 100500 * time.Millisecond}}})
	b := ClairvoyantBound(tr.Tasks, tr.Concurrency, sec)
	r := runOne(tr, sec, 1, Policies(tr, 1, sec)[0], b, false)
	if r.WaitP50 != 1 || r.WaitMax != 1 {
		t.Errorf("wait = %v s (max %v s), want 1 s: a task arriving at zero waits the start-up", r.WaitP50, r.WaitMax)
	}
	if r.WorkerSeconds != 102 || r.Launches != 1 || r.Interrupted != 0 || r.Lost != 0 {
		t.Errorf("got %v worker-s, %d launches, %d interrupted, %d lost; want 102, 1, 0, 0", r.WorkerSeconds, r.Launches, r.Interrupted, r.Lost)
	}
	if b.WorkerSeconds != 101.5 {
		t.Errorf("bound = %v, want 100.5 s running + 1 s start-up", b.WorkerSeconds)
	}

	// At 45 s start-up the wait is the start-up too. The task passes the
	// 30 s max wait at 40 s while its worker is still starting, and the age
	// rule waits for that worker instead of launching another.
	r = runOne(tr, 45*sec, 1, Policies(tr, 4, 45*sec)[0], b, false)
	if r.WaitMax != 45 {
		t.Errorf("wait at 45 s start-up = %v s, want 45", r.WaitMax)
	}
	if r.Launches != 1 {
		t.Errorf("launches at 45 s start-up = %d, want 1: the age rule waits for the starting worker", r.Launches)
	}
}

// scripted is a controller that runs a fixed script.
type scripted struct{ script func(f *fleet) }

func (s scripted) start(f *fleet) { s.script(f) }
func (scripted) enqueued(*fleet)  {}

// TestTerminateMechanics checks a platform kill: SIGTERM at 10 s to a
// worker holding a 100 s task and a 25 s task. The short one finishes
// within the 30 s grace; the long one is killed at 40 s and is visible
// again one visibility timeout (500 s) after it was received (at 0 s), so
// it restarts on the second worker at 500 s and ends at 600 s.
func TestTerminateMechanics(t *testing.T) {
	t.Parallel()
	tr := finish(Trace{Name: "kill", Horizon: time.Minute, Concurrency: 2, MaxWait: time.Minute,
		Tasks: []Task{{Arrival: 0, Duration: 100 * sec}, {Arrival: 0, Duration: 25 * sec}}})
	var f *fleet
	ctl := scripted{func(f *fleet) {
		f.launchWarm(1)
		f.at(10*sec, func() {
			f.terminate(f.live[0])
			f.launchWarm(1)
		})
	}}
	f = newFleet(tr, fleetConfig{Startup: 0, Concurrency: 2, Grace: 30 * sec, VisibilityTimeout: 500 * sec, MaxDeliveries: 3}, ctl, 1, false)
	f.run(func() bool { return f.resolved == len(f.tasks) }, time.Hour)
	long, short := f.tasks[0], f.tasks[1]
	if long.Duration != 100*sec {
		long, short = short, long
	}
	if !short.done || short.deliveries != 1 {
		t.Errorf("short task: done %v after %d deliveries, want done after 1", short.done, short.deliveries)
	}
	if !long.done || long.deliveries != 2 || long.startedAt != 500*sec || f.interrupted != 1 || f.now != 600*sec {
		t.Errorf("long task: done %v, %d deliveries, restarted at %s, %d interrupted, finished %s; want done, 2, 500s, 1, 600s",
			long.done, long.deliveries, long.startedAt, f.interrupted, f.now)
	}
}

// TestEbbNeverInterrupts runs ebb — the server's defaults, before packing, and every
// variant — on every trace at every start-up delay: scale-in drains idle
// workers only, so no task is ever interrupted or lost.
func TestEbbNeverInterrupts(t *testing.T) {
	t.Parallel()
	for _, tr := range Traces(1) {
		for _, d := range Startups {
			t.Run(tr.Name+"/"+d.String(), func(t *testing.T) {
				t.Parallel()
				b := ClairvoyantBound(tr.Tasks, tr.Concurrency, d)
				results := RunVariants(tr, d, 1, b)
				for _, p := range Policies(tr, b.Peak, d) {
					if p.Key == "ebb" || p.Key == "ebb-before" {
						results = append(results, runOne(tr, d, 1, p, b, false))
					}
				}
				for _, r := range results {
					if r.Interrupted != 0 || r.Lost != 0 {
						t.Errorf("%s: %d interrupted, %d lost; want 0", r.Name, r.Interrupted, r.Lost)
					}
					// The bound assumes zero wait, so only a policy that never
					// makes a task wait must stay above it.
					if r.WaitMax == 0 && r.Ratio < 1 {
						t.Errorf("%s: %.3f× the bound without any wait; the bound is not a lower bound", r.Name, r.Ratio)
					}
				}
			})
		}
	}
}

// TestBaselinesInterruptLongJobs: a scaler blind to in-flight tasks kills
// the seeds' long jobs (aws-cdk #9242, KEDA #3674).
func TestBaselinesInterruptLongJobs(t *testing.T) {
	t.Parallel()
	tr := RareLong(1)
	c := Run(tr, 45*sec, 1, false)
	for _, key := range []string{"cdk-wake1", "keda"} {
		if r := c.result(key); r.Interrupted == 0 {
			t.Errorf("%s interrupted no rare-long job", r.Name)
		}
	}
	if r := c.result("always-on"); r.WaitMax != 0 || r.Ratio < 1 {
		t.Errorf("always-on: max wait %v s, %.2f× bound; want 0 s and ≥ 1×", r.WaitMax, r.Ratio)
	}
}

// TestDeterministic: two runs with one seed are identical, timelines,
// report and all, though the suite runs in parallel; another seed differs.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	short := func(seed uint64) []Trace {
		var out []Trace
		for _, tr := range Traces(seed) {
			var kept []Task
			for _, task := range tr.Tasks {
				if task.Arrival < 90*time.Minute {
					kept = append(kept, task)
				}
			}
			tr.Tasks, tr.Horizon = kept, 90*time.Minute
			out = append(out, finish(tr))
		}
		return out
	}
	a, b := runSuite(7, short(7)), runSuite(7, short(7))
	ja, err := a.JSON(0)
	if err != nil {
		t.Fatal(err)
	}
	jb, _ := b.JSON(0)
	if !bytes.Equal(ja, jb) || a.Markdown(0) != b.Markdown(0) {
		t.Error("two runs with seed 7 differ")
	}
	for i := range a.Cases {
		for j := range a.Cases[i].Results {
			ra, rb := a.Cases[i].Results[j], b.Cases[i].Results[j]
			if !reflect.DeepEqual(ra, rb) {
				t.Errorf("%s %s %s: results differ between runs", a.Cases[i].Trace, a.Cases[i].Startup, ra.Name)
			}
		}
	}
	if reflect.DeepEqual(Traces(7), Traces(8)) {
		t.Error("seeds 7 and 8 give the same traces")
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if p50, p99 := percentile(v, 0.5), percentile(v, 0.99); p50 != 5 || p99 != 10 {
		t.Errorf("p50, p99 = %v, %v; want 5, 10 (nearest rank)", p50, p99)
	}
	if p := percentile([]float64{1, math.Inf(1)}, 0.5); p != 1 {
		t.Errorf("p50 of [1, +Inf] = %v, want 1", p)
	}
}

// TestServerDefaultsMirrored guards the constants this package copies from
// the server (it cannot import internal/config without its YAML
// dependency), and the loop cadence it reproduces.
func TestServerDefaultsMirrored(t *testing.T) {
	t.Parallel()
	read := func(path string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", path))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	config := read("internal/config/config.go")
	for _, want := range []string{
		`MaxWaitDefault\s*=\s*30 \* time\.Second`,
		`ScaleDownDelayDefault\s*=\s*DelayDerived`,
		`IdleBeforeZeroDefault\s*=\s*DelayDerived`,
		`ReconcileIntervalDefault\s*=\s*5 \* time\.Second`,
		`MinDefault\s*=\s*0`,
		`BacklogPerWorkerDefault\s*=\s*0`,
		`MaxStepDefault\s*=\s*0`,
	} {
		if !regexp.MustCompile(want).MatchString(config) {
			t.Errorf("internal/config/config.go no longer matches %q; update this package's mirrored defaults", want)
		}
	}
	pool := read("internal/controlplane/pool.go")
	for _, want := range []string{
		`wait, maxAge = min\(interval, time\.Second\)`,
		`idlePasses%6 == 0`,
		`case <-p\.kickCh:`,
		`n := min\(in\.Current-d\.Desired, len\(idle\)\)`,
		`"local":\s*time\.Second,`,
		`"ecs":\s*60 \* time\.Second,`,
		`startupSamples = 16`,
	} {
		if !regexp.MustCompile(want).MatchString(pool) {
			t.Errorf("internal/controlplane/pool.go no longer matches %q; check the simulated reconcile loop", want)
		}
	}
}
