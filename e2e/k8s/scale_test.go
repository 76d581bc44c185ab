package k8s

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ebbq/ebb/internal/testwait"
)

// replicaWatch samples the pool's replica count every 20 ms, recording when
// it first left zero, when it first reached want, and how often it went
// down (scale-ins).
type replicaWatch struct {
	mu       sync.Mutex
	firstUp  time.Time
	reached  time.Time
	downs    int
	last     int32
	maxSeen  int32
	failures int
	want     int32
	stop     chan struct{}
	done     chan struct{}
}

func watchReplicas(t *testing.T, p *pool, want int32) *replicaWatch {
	w := &replicaWatch{stop: make(chan struct{}), done: make(chan struct{}), want: want}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
			s, err := cluster.Client.AppsV1().Deployments(p.ns).GetScale(context.Background(), p.deploy, metav1.GetOptions{})
			now := time.Now()
			w.mu.Lock()
			if err != nil {
				w.failures++
				w.mu.Unlock()
				continue
			}
			n := s.Spec.Replicas
			if n > 0 && w.firstUp.IsZero() {
				w.firstUp = now
			}
			if n >= w.want && w.reached.IsZero() {
				w.reached = now
			}
			if n < w.last {
				w.downs++
			}
			w.last, w.maxSeen = n, max(w.maxSeen, n)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *replicaWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// figures are what the benchmark script (scripts/bench-k8s) collects when
// EBB_K8S_FIGURES names a file: measured, never asserted.
func recordFigures(t *testing.T, name string, v map[string]any) {
	path := os.Getenv("EBB_K8S_FIGURES")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v["test"] = name
	b, _ := json.Marshal(v)
	_, _ = f.Write(append(b, '\n'))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// TestFromZeroAndBack: 200 sleep tasks into a pool at zero; the Deployment
// goes to its max, every task succeeds, and it returns to zero replicas
// (and zero pods) after the idle time.
func TestFromZeroAndBack(t *testing.T) {
	t.Parallel()
	const maxWorkers, concurrency, tasks = 8, 5, 200
	p := newPool(t, poolValues{Name: "zero", Max: maxWorkers, Concurrency: concurrency, DrainTimeout: "30s"})
	p.server(t, p.poolConfig(t, maxWorkers, concurrency, ""))
	if n := p.replicas(t); n != 0 {
		t.Fatalf("the chart's worker Deployment starts at %d replicas, want 0", n)
	}
	w := watchReplicas(t, p, maxWorkers)
	start := time.Now()
	ids := p.enqueueSleep(t, tasks, func(int) int { return 1500 })
	enqueued := time.Now()
	p.waitDone(t, ids, 3*time.Minute)
	done := time.Now()
	p.allSucceededFirstTime(t, ids)
	w.mu.Lock()
	firstUp, reached, maxSeen := w.firstUp, w.reached, w.maxSeen
	w.mu.Unlock()
	if maxSeen != maxWorkers {
		t.Errorf("replicas peaked at %d, want the pool's max %d for %d tasks", maxSeen, maxWorkers, tasks)
	}
	testwait.Eventually(t, 90*time.Second, "back to 0 replicas and no worker running", func() (bool, error) {
		return p.replicas(t) == 0 && p.runner.running() == 0, nil
	})
	zero := time.Now()
	deleted := p.runner.deletionReport(t, true)
	if deleted < maxWorkers {
		t.Errorf("%d pods deleted on the way back to zero, want %d", deleted, maxWorkers)
	}
	decisions, err := p.client.DecisionList(context.Background(), p.name, 200)
	if err != nil {
		t.Fatal(err)
	}
	var firstDecision time.Time
	for _, d := range decisions {
		if d.Action == "up" && (firstDecision.IsZero() || d.At.Before(firstDecision)) {
			firstDecision = d.At
		}
	}
	if firstDecision.IsZero() || firstUp.IsZero() || reached.IsZero() {
		t.Fatalf("no scale-up seen (first decision %v, first replica %v, max reached %v)", firstDecision, firstUp, reached)
	}
	recordFigures(t, "from-zero", map[string]any{
		"tasks": tasks, "max": maxWorkers, "concurrency": concurrency, "sleep_ms": 1500,
		"enqueue_ms":                ms(enqueued.Sub(start)),
		"decision_after_enqueue_ms": ms(firstDecision.Sub(start)),
		"replicas_up_ms":            ms(firstUp.Sub(start)),
		"replicas_max_ms":           ms(reached.Sub(start)),
		"all_done_s":                done.Sub(start).Seconds(),
		"back_to_zero_s":            zero.Sub(done).Seconds(),
	})
}

// TestScaleInSafety: 60 s of bursts of 1–3 s tasks make the pool scale in
// and out again and again; every task succeeds at its first attempt, and no
// pod is deleted while its worker holds a task, as the API server's pod
// deletions checked against the workers' logs show.
func TestScaleInSafety(t *testing.T) {
	t.Parallel()
	const maxWorkers, concurrency = 6, 2
	p := newPool(t, poolValues{Name: "bursts", Max: maxWorkers, Concurrency: concurrency, DrainTimeout: "30s"})
	p.server(t, p.poolConfig(t, maxWorkers, concurrency, ""))
	w := watchReplicas(t, p, maxWorkers)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	var ids []string
	end := time.Now().Add(60 * time.Second)
	for time.Now().Before(end) {
		n := 1 + rng.IntN(2*maxWorkers*concurrency)
		ids = append(ids, p.enqueueSleep(t, n, func(int) int { return 1000 + rng.IntN(2001) })...)
		time.Sleep(time.Duration(2500+rng.IntN(2500)) * time.Millisecond)
	}
	p.waitDone(t, ids, 2*time.Minute)
	p.allSucceededFirstTime(t, ids)
	testwait.Eventually(t, 90*time.Second, "back to 0 replicas", func() (bool, error) {
		return p.replicas(t) == 0 && p.runner.running() == 0, nil
	})
	w.close()
	deleted := p.runner.deletionReport(t, true)
	w.mu.Lock()
	downs := w.downs
	w.mu.Unlock()
	// A scale-in is one worker retired: one lowering of the count may
	// retire several drained pods at once.
	if deleted < 10 {
		t.Errorf("%d pods retired (%d lowerings of the count) in 60 s of bursts, want at least 10 for the check to mean something", deleted, downs)
	}
	t.Logf("%d tasks, %d scale-ins, %d pods deleted", len(ids), downs, deleted)
	recordFigures(t, "scale-in-safety", map[string]any{"tasks": len(ids), "scale_ins": downs, "pods_deleted": deleted})
}
