package policy

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func basePolicy() Policy {
	return Policy{Min: 0, Max: 10, Concurrency: 10, MaxWait: 5 * time.Second,
		ScaleDownDelay: 30 * time.Second, IdleBeforeZero: 60 * time.Second}
}

func TestDecideSingle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		m       Metrics
		p       func(*Policy)
		want    int
		action  Action
		because string // a fragment the reason must contain
	}{
		{name: "FromZeroOnFirstTask", m: Metrics{Queued: 1}, want: 1, action: ActionUp, because: "1 queued, 0 in flight"},
		{name: "BacklogOverConcurrency", m: Metrics{Queued: 35, InFlight: 10, Current: 1}, want: 5, action: ActionUp, because: "1→5 workers"},
		{name: "BacklogPerWorkerKnob", m: Metrics{Queued: 35, Current: 1}, p: func(p *Policy) { p.BacklogPerWorker = 5 }, want: 7, action: ActionUp},
		{name: "InFlightCountsSoLongTasksKeepWorkers", m: Metrics{InFlight: 20, Current: 2, Busy: 2}, want: 2, action: ActionHold},
		{name: "CappedAtMax", m: Metrics{Queued: 1000}, want: 10, action: ActionUp, because: "capped at max 10"},
		{name: "HeldAtMin", m: Metrics{}, p: func(p *Policy) { p.Min = 2 }, want: 2, action: ActionUp, because: "held at min 2"},
		{name: "OldestOverMaxWaitAddsOne", m: Metrics{Queued: 3, OldestAge: 8 * time.Second, Current: 1}, want: 2, action: ActionUp, because: "oldest 8s > max wait 5s"},
		{name: "OldestUnderMaxWaitNoChange", m: Metrics{Queued: 3, OldestAge: 2 * time.Second, Current: 1}, want: 1, action: ActionHold},
		{name: "OldestOverMaxWaitWhileOneStartsWaits", m: Metrics{Queued: 3, OldestAge: 8 * time.Second, Current: 1, Starting: 1}, want: 1, action: ActionHold, because: "1 starting"},
		{name: "NeverBelowBusy", m: Metrics{InFlight: 3, Current: 3, Busy: 3}, want: 3, action: ActionHold},
		{name: "MaxStep", m: Metrics{Queued: 100, Current: 1}, p: func(p *Policy) { p.MaxStep = 2 }, want: 3, action: ActionUp, because: "max step 2"},
		{name: "FreshHistoryDoesNotDropToZero", m: Metrics{Current: 2}, want: 1, action: ActionDown, because: "before zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := basePolicy()
			if tt.p != nil {
				tt.p(&p)
			}
			d, _ := Decide(t0, tt.m, History{}, p)
			if d.Desired != tt.want || d.Action != tt.action {
				t.Errorf("Decide = %d %s (%s), want %d %s", d.Desired, d.Action, d.Reason, tt.want, tt.action)
			}
			if !strings.Contains(d.Reason, tt.because) {
				t.Errorf("reason %q does not contain %q", d.Reason, tt.because)
			}
		})
	}
}

// step is one decision in a sequence: at offset from t0, with metrics, the
// expected answer.
type step struct {
	at   time.Duration
	m    Metrics
	want int
}

func runSteps(t *testing.T, p Policy, steps []step) {
	t.Helper()
	var h History
	for i, s := range steps {
		var d Decision
		d, h = Decide(t0.Add(s.at), s.m, h, p)
		if d.Desired != s.want {
			t.Fatalf("step %d at +%s: desired %d (%s), want %d", i, s.at, d.Desired, d.Reason, s.want)
		}
	}
}

func TestDecideSequences(t *testing.T) {
	t.Parallel()
	t.Run("ScaleDownWaitsForDelay", func(t *testing.T) {
		t.Parallel()
		runSteps(t, basePolicy(), []step{
			{0, Metrics{Queued: 40}, 4},
			{5 * time.Second, Metrics{Queued: 5, InFlight: 5, Current: 4, Busy: 1}, 4}, // want 1, window max 4
			{20 * time.Second, Metrics{InFlight: 1, Current: 4, Busy: 1}, 4},           // still within 30s of the burst
			{31 * time.Second, Metrics{InFlight: 1, Current: 4, Busy: 1}, 1},           // the 4 left the window
			{40 * time.Second, Metrics{Current: 1}, 1},                                 // idle 0s since last activity at 31s
			{70 * time.Second, Metrics{Current: 1}, 1},                                 // idle 39s < 60s
			{92 * time.Second, Metrics{Current: 1}, 0},                                 // idle 61s ≥ 60s
			{93 * time.Second, Metrics{Queued: 1}, 1},                                  // wake from zero at once
		})
	})
	t.Run("NoFlappingBetweenBursts", func(t *testing.T) {
		t.Parallel()
		p := basePolicy()
		var h History
		current := 0
		downs := 0
		// A burst every 10 s, idle in between: with a 30 s scale-down delay the
		// pool must hold its size instead of shrinking and regrowing.
		for sec := 0; sec < 120; sec++ {
			m := Metrics{Current: current}
			if sec%10 < 3 {
				m.Queued = 30
			}
			var d Decision
			d, h = Decide(t0.Add(time.Duration(sec)*time.Second), m, h, p)
			if d.Desired < current {
				downs++
			}
			current = d.Desired
		}
		if downs != 0 || current != 3 {
			t.Fatalf("pool shrank %d times and ended at %d; want no shrink and 3", downs, current)
		}
	})
	t.Run("IdleBeforeZeroRestartsOnActivity", func(t *testing.T) {
		t.Parallel()
		runSteps(t, basePolicy(), []step{
			{0, Metrics{Queued: 1}, 1},
			{50 * time.Second, Metrics{Current: 1}, 1},
			{55 * time.Second, Metrics{InFlight: 1, Current: 1, Busy: 1}, 1}, // activity resets the idle clock
			{100 * time.Second, Metrics{Current: 1}, 1},                      // 45s idle
			{116 * time.Second, Metrics{Current: 1}, 0},                      // 61s idle
		})
	})
}

// TestResumeHoldsTheDelayAcrossALeaderChange: a new leader resumes with the
// current size and its predecessor's recent decisions as wants, so it does
// not shrink the pool before the scale-down delay has passed since either.
func TestResumeHoldsTheDelayAcrossALeaderChange(t *testing.T) {
	t.Parallel()
	p := Policy{Min: 0, Max: 8, Concurrency: 2, ScaleDownDelay: 10 * time.Second, IdleBeforeZero: time.Minute}
	t0 := time.Unix(1_700_000_000, 0)
	light := Metrics{Queued: 0, InFlight: 2, Current: 4} // wants 1

	// Fresh history (the old behaviour): the first decision shrinks at once.
	if d, _ := Decide(t0, light, History{}, p); d.Desired != 1 {
		t.Fatalf("fresh history: desired %d, want 1 (the case Resume exists for)", d.Desired)
	}

	h := Resume(t0, 4, []Observed{{At: t0.Add(-2 * time.Second), Size: 6}, {At: t0.Add(-time.Hour), Size: 8}})
	if h.Fresh() {
		t.Fatal("a resumed history reports itself fresh")
	}
	d, h := Decide(t0, light, h, p)
	if d.Desired != 4 || d.Action != ActionHold {
		t.Fatalf("right after a leader change: %+v, want to hold 4 (the predecessor's 6 two seconds ago and the current 4)", d)
	}
	d, h = Decide(t0.Add(9*time.Second), light, h, p)
	if d.Desired != 4 {
		t.Fatalf("9 s after the change: desired %d, want 4 until the 10 s delay has passed", d.Desired)
	}
	d, _ = Decide(t0.Add(11*time.Second), light, h, p)
	if d.Desired != 1 || d.Action != ActionDown {
		t.Fatalf("11 s after the change: %+v, want down to 1", d)
	}

	// Growing is never held back.
	up := Metrics{Queued: 20, InFlight: 8, Current: 4}
	if d, _ := Decide(t0, up, Resume(t0, 4, nil), p); d.Desired != 8 || d.Action != ActionUp {
		t.Fatalf("a loaded pool right after a leader change: %+v, want up to 8", d)
	}
	if !(History{}).Fresh() {
		t.Fatal("the zero History is not fresh")
	}
}

// TestDerivedDelays: unless set, the scale-down delay is 0 and idle before
// zero is the start-up time (the rent-or-buy break-even); set values stay.
func TestDerivedDelays(t *testing.T) {
	t.Parallel()
	p := basePolicy()
	p.ScaleDownDelay, p.IdleBeforeZero, p.Startup = Derived, Derived, 45*time.Second
	r := p.Resolve()
	if r.ScaleDownDelay != 0 || r.IdleBeforeZero != 45*time.Second {
		t.Errorf("derived delays for a 45s start-up = %s, %s; want 0s, 45s", r.ScaleDownDelay, r.IdleBeforeZero)
	}
	set := basePolicy()
	set.Startup = 45 * time.Second
	if r := set.Resolve(); r.ScaleDownDelay != 30*time.Second || r.IdleBeforeZero != time.Minute {
		t.Errorf("set delays = %s, %s; want them kept (30s, 1m0s)", r.ScaleDownDelay, r.IdleBeforeZero)
	}
}

// TestDerivedIdleBeforeZeroFollowsStartup walks one pool to zero on a stub
// clock with derived delays: a 2-worker pool drops to 1 at once when its
// backlog halves (delay 0), and to zero exactly one start-up after the last
// task, not before; a longer start-up keeps the last worker longer.
func TestDerivedIdleBeforeZeroFollowsStartup(t *testing.T) {
	t.Parallel()
	for _, startup := range []time.Duration{time.Second, 45 * time.Second} {
		p := basePolicy()
		p.ScaleDownDelay, p.IdleBeforeZero, p.Startup = Derived, Derived, startup
		var h History
		var d Decision
		d, h = Decide(t0, Metrics{InFlight: 20, Current: 2, Busy: 2}, h, p)
		if d.Desired != 2 {
			t.Fatalf("%s: 20 in flight on 2 workers: desired %d (%s), want 2", startup, d.Desired, d.Reason)
		}
		d, h = Decide(t0.Add(time.Second), Metrics{InFlight: 5, Current: 2, Busy: 1}, h, p)
		if d.Desired != 1 || d.Action != ActionDown {
			t.Errorf("%s: backlog fits one worker: %d %s (%s), want 1 down at once", startup, d.Desired, d.Action, d.Reason)
		}
		last := t0.Add(2 * time.Second)
		d, h = Decide(last, Metrics{InFlight: 1, Current: 1, Busy: 1}, h, p)
		if d.Desired != 1 {
			t.Fatalf("%s: one task in flight: desired %d, want 1", startup, d.Desired)
		}
		d, h = Decide(last.Add(startup-time.Millisecond), Metrics{Current: 1}, h, p)
		if d.Desired != 1 || !strings.Contains(d.Reason, "before zero") {
			t.Errorf("%s: idle just under one start-up: %d (%s), want 1, kept for idle before zero", startup, d.Desired, d.Reason)
		}
		d, _ = Decide(last.Add(startup), Metrics{Current: 1}, h, p)
		if d.Desired != 0 || d.Action != ActionDown {
			t.Errorf("%s: idle one start-up: %d %s (%s), want 0 down", startup, d.Desired, d.Action, d.Reason)
		}
	}
}
