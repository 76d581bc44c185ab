package simreal

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestRunByHand checks the real run's figures on a run small enough to
// work out by hand. Workers (launch → exit, seconds from T0): A 0 → 10,
// B 2 → 5.03, C 10 → 12.02; C is launched as A exits, so the peak is 2 (A
// and B), and the worker-seconds are 10 + 3.03 + 2.02 = 15.05.
func TestRunByHand(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	task := func(id, enq, start, fin int, w string) Task {
		return Task{ID: id, EnqueuedAt: at(enq), StartedAt: at(start), FinishedAt: at(fin), Worker: w, State: "succeeded", Attempts: 1, Starts: 1}
	}
	r := Run{
		T0: t0,
		Workers: []Worker{
			{ID: "A", Launched: at(0), Exited: at(10000)},
			{ID: "B", Launched: at(2000), Exited: at(5030)},
			{ID: "C", Launched: at(10000), Exited: at(12020)},
		},
		Tasks: []Task{
			task(1, -50, 100, 1000, "A"),   // waited for A: start-up sample 100 ms
			task(2, 3000, 3400, 4500, "B"), // B existed before it: no sample
			task(3, 9900, 10300, 11000, "C"),
			task(4, 5000, 6000, 6500, "A"),
			task(5, 7000, 7000, 9500, "A"), // A holds it across its drain at 8 s
		},
		Decisions: []Decision{
			{At: at(0), Action: "up", From: 0, To: 1},
			{At: at(2000), Action: "up", From: 1, To: 2},
			{At: at(5000), Action: "down", From: 2, To: 1, Drained: []string{"B"}},
			{At: at(5000), Action: "down", From: 2, To: 1, Drained: []string{"B"}},
			{At: at(8000), Action: "down", From: 1, To: 0, Drained: []string{"A"}},
			{At: at(10000), Action: "up", From: 0, To: 1},
			{At: at(12000), Action: "down", From: 1, To: 0, Drained: []string{"C"}},
		},
	}
	r.Tasks[3].Starts = 2 // handed back once: interrupted

	got := r.Stats()
	// Waits 0.15, 0.4, 0.4, 1, 0: sorted 0, 0.15, 0.4, 0.4, 1.
	want := Stats{WorkerSeconds: 15.05, WaitP50: 0.4, WaitP99: 1, WaitMax: 1, ScaleUps: 3, ScaleDowns: 4,
		Launches: 3, Drains: 3, Interrupted: 1, PeakWorkers: 2}
	if d := got.WorkerSeconds - want.WorkerSeconds; d > 1e-9 || d < -1e-9 {
		t.Errorf("WorkerSeconds = %v, want %v", got.WorkerSeconds, want.WorkerSeconds)
	}
	got.WorkerSeconds = want.WorkerSeconds
	if got != want {
		t.Errorf("Stats =\n %+v, want\n %+v", got, want)
	}
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, c := range []struct {
		name      string
		got, want []time.Duration
	}{
		{"StartupSamples", r.StartupSamples(), ms(100, 300)},
		{"WakeLatencies", r.WakeLatencies(), ms(50, 100)},
		{"ExitLags", r.ExitLags(), ms(20, 30)},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := r.RepeatedDrains(); n != 1 {
		t.Errorf("RepeatedDrains = %d, want 1", n)
	}
	if b := r.BusyDrains(); len(b) != 1 || b[0].Worker != "A" || b[0].Holding != 1 || !b[0].At.Equal(at(8000)) {
		t.Errorf("BusyDrains = %+v, want A holding 1 at 8 s", b)
	}
}

func TestRatio(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		sim, real float64
		want      string
	}{{90, 100, "0.90×"}, {0, 0, "—"}, {3, 0, "—"}, {0, 0.01, "0.00×"}} {
		if got := Ratio(c.sim, c.real); got != c.want {
			t.Errorf("Ratio(%v, %v) = %q, want %q", c.sim, c.real, got, c.want)
		}
	}
}

func TestParseLogs(t *testing.T) {
	t.Parallel()
	server := `time=2026-12-02T21:00:11.108Z level=INFO msg="control plane running" server=s pools=1
time=2026-12-02T21:00:11.108Z level=INFO msg="worker instance started" server=s pool=p target=local id=p-a pid=1 log=/x/p-a.log
time=2026-12-02T21:00:11.200Z level=INFO msg="scaled up" server=s pool=p launched=1 reason="p: 1 queued id=p-b → 0→1 workers"
time=2026-12-02T21:00:12.5Z level=INFO msg="worker instance started" server=s pool=p target=local id=p-b pid=2 log=/x/p-b.log
time=2026-12-02T21:00:13.250Z level=INFO msg="worker instance exited" server=s pool=p target=local id=p-a code=0 ran_for=2.142s log=/x/p-a.log
`
	ws, err := ParseServerLog(strings.NewReader(server))
	if err != nil {
		t.Fatal(err)
	}
	ts := func(s string) time.Time { v, _ := time.Parse(time.RFC3339Nano, s); return v }
	want := []Worker{
		{ID: "p-a", Launched: ts("2026-12-02T21:00:11.108Z"), Exited: ts("2026-12-02T21:00:13.250Z")},
		{ID: "p-b", Launched: ts("2026-12-02T21:00:12.5Z")},
	}
	if !reflect.DeepEqual(ws, want) {
		t.Errorf("ParseServerLog = %+v, want %+v", ws, want)
	}
	worker := `time=2026-12-02T21:00:12.701Z level=INFO msg="platform none (--platform none)" platform=none worker=p-a
time=2026-12-02T21:00:12.703Z level=INFO msg="worker started" worker=p-a queues=[p] concurrency=2 broker=sqlite
`
	if got, err := ParseWorkerReady(strings.NewReader(worker)); err != nil || !got.Equal(ts("2026-12-02T21:00:12.703Z")) {
		t.Errorf("ParseWorkerReady = %v, %v", got, err)
	}
}

func TestPeakTouchingSpans(t *testing.T) {
	t.Parallel()
	s := time.Second
	if got := Peak([][2]time.Duration{{0, 2 * s}, {2 * s, 3 * s}, {2 * s, 4 * s}}); got != 2 {
		t.Errorf("Peak = %d, want 2", got)
	}
}

func TestStatsJSONNeverRan(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Stats{WorkerSeconds: 1, WaitP50: 0.5, WaitP99: math.Inf(1), WaitMax: math.Inf(1)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `"wait_p50_s":0.5,"wait_p99_s":null,"wait_max_s":null`; !strings.Contains(got, want) {
		t.Errorf("JSON %s, want it to contain %s", got, want)
	}
}
