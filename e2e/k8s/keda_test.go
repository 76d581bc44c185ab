package k8s

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/target/kubernetes"
	"github.com/ebbq/ebb/internal/testwait"
)

var (
	kedaOnce sync.Once
	kedaErr  error
)

func startKEDA(t *testing.T) {
	t.Helper()
	kedaOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		kedaErr = cluster.StartKEDA(ctx)
	})
	if kedaErr != nil {
		t.Fatal(kedaErr)
	}
}

// TestKEDAMode runs the real KEDA operator with two ScaledObjects side by
// side, each on its own Deployment at zero: one on ebb's external-push
// scaler, one on KEDA's own Redis scaler with its defaults, watching the
// ready set of a queue without workers in the same Redis. One enqueue wakes both; the
// push path reaches 1 replica long before the Redis scaler's 30 s poll,
// ebb keeps the busy pod's deletion cost high while KEDA owns the count,
// and the pool returns to 0 after the cooldown.
func TestKEDAMode(t *testing.T) {
	t.Parallel()
	startKEDA(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- keda-operator log (tail):\n%s", cluster.Log("keda-operator", 40))
		}
	})
	ctx := context.Background()
	p := newPool(t, poolValues{Name: "keda", Max: 2, Concurrency: 2, DrainTimeout: "30s", KEDA: true})
	kedaPort := freePort(t)
	kedaAddr := "127.0.0.1:" + strconv.Itoa(kedaPort)
	api := p.server(t, p.poolConfig(t, 2, 2, "      keda: true"), "--keda-addr", kedaAddr)
	t.Cleanup(func() {
		if t.Failed() {
			if resp, err := http.Get("http://" + api + "/api/v1/pools"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Logf("--- pools: %s", b)
			}
		}
	})

	// The comparison Deployment: the same chart template for another pool,
	// whose pods run nothing (no pod runner watches them).
	cmp := newPoolObjectsOnly(t, p.ns, "kedaredis")
	redisHostPort := strings.TrimSuffix(strings.TrimPrefix(p.redis, "redis://"), "/0")
	objects := fmt.Sprintf(`apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: ebb-push
spec:
  scaleTargetRef:
    name: %[1]s
  minReplicaCount: 0
  maxReplicaCount: 2
  cooldownPeriod: 5
  triggers:
    - type: external-push
      metadata:
        scalerAddress: %[2]s
        pool: keda
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: redis-list
spec:
  scaleTargetRef:
    name: %[3]s
  minReplicaCount: 0
  maxReplicaCount: 2
  triggers:
    - type: redis
      metadata:
        address: %[4]s
        listName: "ebb:{kedaredis}:ready:2"
`, p.deploy, kedaAddr, cmp, redisHostPort)
	kubectlApply(t, p.ns, []byte(objects))
	for _, so := range []string{"ebb-push", "redis-list"} {
		testwait.Eventually(t, 60*time.Second, "ScaledObject "+so+" Ready", func() (bool, error) {
			out, err := cluster.Kubectl(ctx, "-n", p.ns, "get", "scaledobject", so, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if err != nil {
				return false, err
			}
			return strings.TrimSpace(string(out)) == "True", nil
		})
	}
	serverLog := filepath.Join(p.dir, "server.log")
	testwait.Eventually(t, 30*time.Second, "KEDA's stream to ebb open", func() (bool, error) {
		b, err := os.ReadFile(serverLog)
		return strings.Contains(string(b), "KEDA stream opened"), err
	})
	if n := p.replicas(t); n != 0 {
		t.Fatalf("ebb's Deployment has %d replicas before any enqueue, want 0", n)
	}
	cmpScale := func() int32 {
		s, err := cluster.Client.AppsV1().Deployments(p.ns).GetScale(ctx, cmp, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Spec.Replicas
	}
	if cmpScale() != 0 {
		t.Fatal("the Redis-scaler Deployment is not at 0 before the enqueue")
	}

	// One task for each: ebb's pool runs its own; the Redis scaler's queue
	// has no worker, so its task stays in the ready set for KEDA's poll
	// (a task that a worker takes at once would never be seen by it).
	start := time.Now()
	ids := p.enqueueSleep(t, 1, func(int) int { return 6000 })
	if _, err := p.client.EnqueueRaw(ctx, "sleep", []byte(`{"ms": 1}`), &ebb.EnqueueOpts{Queue: "kedaredis"}); err != nil {
		t.Fatal(err)
	}
	var pushUp, redisUp time.Time
	busyMarked := false
	marked := func() bool {
		pods, err := cluster.Client.CoreV1().Pods(p.ns).List(ctx, metav1.ListOptions{LabelSelector: "ebb.dev/pool=keda"})
		if err != nil {
			t.Fatal(err)
		}
		for _, pod := range pods.Items {
			if pod.Annotations[kubernetes.DeletionCostAnnotation] == strconv.Itoa(kubernetes.BusyCost) {
				return true
			}
		}
		return false
	}
	deadline := start.Add(50 * time.Second)
	for time.Now().Before(deadline) && (pushUp.IsZero() || redisUp.IsZero()) {
		now := time.Now()
		// While KEDA owns the count, ebb marks the busy pod (the task
		// runs 6 s, within the Redis scaler's poll).
		busyMarked = busyMarked || (!pushUp.IsZero() && marked())
		if pushUp.IsZero() && p.replicas(t) >= 1 {
			pushUp = now
		}
		if redisUp.IsZero() && cmpScale() >= 1 {
			redisUp = now
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pushUp.IsZero() {
		t.Fatalf("KEDA did not scale ebb's Deployment from 0 within 50 s of the enqueue\n--- keda-operator log:\n%s", cluster.Log("keda-operator", 30))
	}
	// The polling interval is 30 s: reaching 1 replica well before it
	// means the push, not a poll, woke KEDA. (The figure itself goes to
	// docs/benchmarks.md.)
	if d := pushUp.Sub(start); d > 10*time.Second {
		t.Errorf("0→1 through ebb's push took %s: no faster than KEDA's 30 s poll", d)
	}

	if !busyMarked {
		t.Errorf("the busy pod never carried deletion cost %d while KEDA owned the count", kubernetes.BusyCost)
	}
	p.waitDone(t, ids, time.Minute)
	p.allSucceededFirstTime(t, ids)
	testwait.Eventually(t, 60*time.Second, "KEDA back to 0 after its cooldown", func() (bool, error) {
		return p.replicas(t) == 0, nil
	})
	back := time.Now()
	p.runner.deletionReport(t, false)
	fig := map[string]any{
		"push_0_to_1_ms": ms(pushUp.Sub(start)),
		"cooldown_s":     5, "back_to_zero_after_done_s": back.Sub(start).Seconds(),
	}
	if !redisUp.IsZero() {
		fig["redis_0_to_1_ms"] = ms(redisUp.Sub(start))
	}
	t.Logf("0→1: external-push %s, KEDA's Redis scaler %s", pushUp.Sub(start), redisUp.Sub(start))
	recordFigures(t, "keda", fig)
}

// newPoolObjectsOnly renders the chart's worker Deployment for another pool
// into ns and returns its name.
func newPoolObjectsOnly(t *testing.T, ns, name string) string {
	t.Helper()
	values := poolValues{Name: name, Max: 2, Concurrency: 1, DrainTimeout: "30s"}.write(t)
	kubectlApply(t, ns, helmTemplate(t, ns, values, "workers.yaml"))
	return release + "-worker-" + name
}
