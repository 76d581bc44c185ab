package sim

import (
	"testing"
	"time"
)

// TestReplayEbbShortBursty checks the replay's bookkeeping on the trace the
// real comparison runs: every worker it launched was drained (ebb never
// terminates), the pool stayed within max, each decision launched or
// drained at least one worker, and no task was interrupted.
func TestReplayEbbShortBursty(t *testing.T) {
	t.Parallel()
	tr := ShortBursty(1)
	r := ReplayEbb(tr, 4, 50*time.Millisecond, 1)
	if len(r.Waits) != len(tr.Tasks) || r.Interrupted != 0 {
		t.Fatalf("%d waits for %d tasks, %d interrupted", len(r.Waits), len(tr.Tasks), r.Interrupted)
	}
	if r.Drains != r.Launches || r.PeakWorkers > 4 || r.PeakWorkers < 1 {
		t.Errorf("launches %d, drains %d, peak %d (max 4)", r.Launches, r.Drains, r.PeakWorkers)
	}
	if r.ScaleUps < 1 || r.ScaleUps > r.Launches || r.ScaleDowns < 1 || r.ScaleDowns > r.Drains {
		t.Errorf("%d scale-ups for %d launches, %d scale-downs for %d drains", r.ScaleUps, r.Launches, r.ScaleDowns, r.Drains)
	}
	var ws float64
	for _, s := range r.Spans {
		ws += (s[1] - s[0]).Seconds()
	}
	if d := ws - r.WorkerSeconds; d > 1e-6 || d < -1e-6 {
		t.Errorf("spans sum to %.3f worker-s, WorkerSeconds %.3f", ws, r.WorkerSeconds)
	}
	// Realized keeps the tasks and their durations, moving only arrivals.
	moved := Realized(tr, map[int]time.Duration{0: tr.Tasks[0].Arrival + time.Millisecond})
	if len(moved.Tasks) != len(tr.Tasks) || moved.Tasks[0].Arrival != tr.Tasks[0].Arrival+time.Millisecond {
		t.Errorf("Realized moved the first arrival to %s (%d tasks)", moved.Tasks[0].Arrival, len(moved.Tasks))
	}
}
