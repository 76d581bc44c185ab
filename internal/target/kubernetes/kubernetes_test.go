package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ebbq/ebb/internal/target"
	"github.com/ebbq/ebb/internal/testkube"
	"github.com/ebbq/ebb/internal/testwait"
)

// These tests run against a real API server, controller-manager, scheduler
// and kwok (pods reach Running and Ready on a fake node; no container runs),
// one cluster for the whole package.
var cluster *testkube.Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	c, err := testkube.Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Stop()
	fmt.Fprintf(os.Stderr, "testkube: cluster up in %s\n", time.Since(start).Round(time.Millisecond))
	cluster = c
	return m.Run()
}

var nsSeq atomic.Int64

// namespace creates a namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e6, nsSeq.Add(1))
	_, err := cluster.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// deployment creates a Deployment of fake workers at zero replicas.
func deployment(t *testing.T, ns, name string) {
	t.Helper()
	labels := map[string]string{"app": name}
	zero := int32(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "ebb:test"}}},
			},
		},
	}
	if _, err := cluster.Client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func newTarget(t *testing.T, ns, name string) *Target {
	t.Helper()
	tg, err := New(Config{Namespace: ns, Name: name, REST: cluster.REST, MarkSettle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// running waits until the target lists n running pods and nothing else.
func running(t *testing.T, tg *Target, n int) []string {
	t.Helper()
	var ids []string
	testwait.Eventually(t, 60*time.Second, fmt.Sprintf("%d running pods", n), func() (bool, error) {
		ins, err := tg.Instances(context.Background())
		if err != nil {
			return false, err
		}
		ids = ids[:0]
		for _, in := range ins {
			if in.State != target.StateRunning {
				return false, nil
			}
			ids = append(ids, in.ID)
		}
		return len(ids) == n && allReady(t, tg), nil
	})
	return ids
}

func allReady(t *testing.T, tg *Target) bool {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	for i := range tg.pods {
		if !runningReady(&tg.pods[i]) {
			return false
		}
	}
	return true
}

func replicas(t *testing.T, ns, name string) int32 {
	t.Helper()
	s, err := cluster.Client.AppsV1().Deployments(ns).GetScale(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Spec.Replicas
}

func cost(t *testing.T, ns, pod string) string {
	t.Helper()
	p, err := cluster.Client.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Annotations[DeletionCostAnnotation]
}

// TestRetireDeletesExactlyTheDrainedPods is the scale-in safety property on
// the real ReplicaSet controller: across rounds, with busy pods marked and
// drained pods picked at random positions, lowering the count deletes
// exactly the drained pods and never a busy one.
func TestRetireDeletesExactlyTheDrainedPods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	deployment(t, ns, "w")
	tg := newTarget(t, ns, "w")
	if _, err := tg.Launch(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if got := replicas(t, ns, "w"); got != 6 {
		t.Fatalf("replicas after Launch(6) = %d", got)
	}
	pods := running(t, tg, 6)
	for round := range 3 {
		slices.Sort(pods)
		busy := []string{pods[0], pods[len(pods)-1]}
		drained := []string{pods[1+round%(len(pods)-2)]}
		if round == 1 {
			drained = append(drained, pods[len(pods)-2])
		}
		if err := tg.Protect(ctx, busy); err != nil {
			t.Fatal(err)
		}
		for _, b := range busy {
			if c := cost(t, ns, b); c != strconv.Itoa(BusyCost) {
				t.Fatalf("busy pod %s has deletion cost %q, want %d", b, c, BusyCost)
			}
		}
		before := replicas(t, ns, "w")
		// The first pass only marks: the ReplicaSet's cache must see the
		// cost before it sees the lowered count.
		if err := tg.Retire(ctx, drained); err != nil {
			t.Fatal(err)
		}
		if got := replicas(t, ns, "w"); got != before {
			t.Fatalf("round %d: the first Retire lowered the count to %d before the mark settled", round, got)
		}
		for _, d := range drained {
			if c := cost(t, ns, d); c != strconv.Itoa(DrainedCost) {
				t.Fatalf("drained pod %s has deletion cost %q, want %d", d, c, DrainedCost)
			}
		}
		testwait.Eventually(t, 10*time.Second, "the count lowered", func() (bool, error) {
			if _, err := tg.Instances(ctx); err != nil {
				return false, err
			}
			if err := tg.Retire(ctx, drained); err != nil {
				return false, err
			}
			return replicas(t, ns, "w") == before-int32(len(drained)), nil
		})
		// A second call for the same pods must not lower it again.
		if err := tg.Retire(ctx, drained); err != nil {
			t.Fatal(err)
		}
		want := slices.DeleteFunc(slices.Clone(pods), func(p string) bool { return slices.Contains(drained, p) })
		got := running(t, tg, len(want))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: pods left %v, want %v (drained %v, busy %v): the ReplicaSet deleted the wrong pods", round, got, want, drained, busy)
		}
		pods = got
	}
	// Protect takes costs off pods that are idle again.
	if err := tg.Protect(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if c := cost(t, ns, p); c != "" {
			t.Fatalf("idle pod %s still has deletion cost %q", p, c)
		}
	}
}

// TestRetireWaitsForUnreadyPods: a Pending pod outranks every Running one
// in the ReplicaSet's choice, so the count is not lowered while one exists.
func TestRetireWaitsForUnreadyPods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	deployment(t, ns, "w")
	tg := newTarget(t, ns, "w")
	if _, err := tg.Launch(ctx, 2); err != nil {
		t.Fatal(err)
	}
	pods := running(t, tg, 2)
	// A pod that cannot be scheduled stays Pending.
	_, err := cluster.Client.AppsV1().Deployments(ns).Patch(ctx, "w", types.MergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"nodeSelector":{"nowhere":"true"}}}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 30*time.Second, "a Pending pod of the new template", func() (bool, error) {
		ins, err := tg.Instances(ctx)
		if err != nil {
			return false, err
		}
		for _, in := range ins {
			if in.State == target.StateStarting && !strings.HasPrefix(in.ID, pendingPrefix) {
				return true, nil
			}
		}
		return false, nil
	})
	before := replicas(t, ns, "w")
	for range 4 {
		if err := tg.Retire(ctx, pods[:1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // past MarkSettle
		if _, err := tg.Instances(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := replicas(t, ns, "w"); got != before {
		t.Fatalf("count lowered from %d to %d while a Pending pod would have been deleted instead of the drained one", before, got)
	}
}

// TestConflictsAreRetried: a write to the workload between the target's
// read and its write makes the API server reject the stale
// resourceVersion; the target reads again and writes the right count.
func TestConflictsAreRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	deployment(t, ns, "w")
	tg := newTarget(t, ns, "w")
	interfered := 0
	tg.beforeWrite = func() {
		if interfered < 2 {
			interfered++
			_, err := cluster.Client.AppsV1().Deployments(ns).Patch(ctx, "w", types.MergePatchType,
				[]byte(fmt.Sprintf(`{"metadata":{"labels":{"touched":"%d"}}}`, interfered)), metav1.PatchOptions{})
			if err != nil {
				t.Error(err)
			}
		}
	}
	if _, err := tg.Launch(ctx, 3); err != nil {
		t.Fatalf("Launch with two conflicting writes: %v", err)
	}
	if got := replicas(t, ns, "w"); got != 3 || interfered != 2 {
		t.Fatalf("replicas = %d after %d conflicts, want 3 after 2", got, interfered)
	}
	if tg.conflicts.Load() != 2 {
		t.Fatalf("the API server reported %d conflicts, want 2: the test did not exercise the retry", tg.conflicts.Load())
	}
	if err := tg.LastError(); err != nil {
		t.Fatalf("LastError after a successful retry = %v", err)
	}
}

// TestMissingAndChangedWorkloadsAreReported: a missing Deployment and a
// count changed by hand show on the status, and the target recovers when
// the Deployment appears.
func TestMissingAndChangedWorkloadsAreReported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	tg := newTarget(t, ns, "later")
	_, err := tg.Instances(ctx)
	if !errors.Is(err, ErrWorkloadNotFound) {
		t.Fatalf("Instances of a missing Deployment = %v, want ErrWorkloadNotFound", err)
	}
	if _, err := tg.Launch(ctx, 1); !errors.Is(err, ErrWorkloadNotFound) {
		t.Fatalf("Launch on a missing Deployment = %v, want ErrWorkloadNotFound", err)
	}
	if st := tg.Status(); !strings.Contains(st, "does not exist in namespace "+ns) {
		t.Fatalf("Status = %q, want it to say the Deployment does not exist", st)
	}
	deployment(t, ns, "later")
	if _, err := tg.Launch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := tg.LastError(); err != nil {
		t.Fatalf("LastError after the Deployment appeared = %v", err)
	}
	if _, err := cluster.Kubectl(ctx, "-n", ns, "scale", "deployment/later", "--replicas=3"); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Instances(ctx); err != nil {
		t.Fatal(err)
	}
	if st := tg.Status(); !strings.Contains(st, "replicas changed outside ebb") || !strings.Contains(st, "ebb had set 1, found 3") {
		t.Fatalf("Status = %q, want the hand change reported", st)
	}
	// It goes on from the new count rather than fighting it.
	if _, err := tg.Launch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := replicas(t, ns, "later"); got != 4 {
		t.Fatalf("replicas = %d, want 4 (3 set by hand + 1)", got)
	}
}

// TestKubeconfigNamespace: with only a kubeconfig, the target reaches the
// API server it names and works in its context's namespace.
func TestKubeconfigNamespace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	deployment(t, ns, "w")
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(testkube.KubeconfigFor(cluster.Server, cluster.Token, ns)), 0o600); err != nil {
		t.Fatal(err)
	}
	tg, err := New(Config{Name: "w", Kubeconfig: path})
	if err != nil {
		t.Fatal(err)
	}
	if tg.namespace != ns {
		t.Fatalf("namespace = %q, want the context's %q", tg.namespace, ns)
	}
	if _, err := tg.Launch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := replicas(t, ns, "w"); got != 1 {
		t.Fatalf("replicas = %d, want 1", got)
	}
	if _, err := New(Config{Name: "w", Kubeconfig: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("New with a kubeconfig that does not exist succeeded")
	}
}

// TestStatefulSetRetiresFromTheTop: the StatefulSet controller removes the
// highest ordinals, so only drained pods at the top are retired.
func TestStatefulSetRetiresFromTheTop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	labels := map[string]string{"app": "s"}
	zero := int32(0)
	ss := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "ebb:test"}}},
			},
		},
	}
	if _, err := cluster.Client.AppsV1().StatefulSets(ns).Create(ctx, ss, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tg, err := New(Config{Namespace: ns, Kind: KindStatefulSet, Name: "s", REST: cluster.REST})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Launch(ctx, 4); err != nil {
		t.Fatal(err)
	}
	running(t, tg, 4)
	count := func() int32 {
		s, err := cluster.Client.AppsV1().StatefulSets(ns).GetScale(ctx, "s", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Spec.Replicas
	}
	// s-1 is drained but s-2 and s-3 are not: nothing can be retired.
	if err := tg.Retire(ctx, []string{"s-1"}); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 4 {
		t.Fatalf("replicas = %d after retiring s-1 below busy ordinals, want 4", got)
	}
	if err := tg.Retire(ctx, []string{"s-1", "s-3", "s-2"}); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 1 {
		t.Fatalf("replicas = %d after retiring s-1..s-3, want 1", got)
	}
	got := running(t, tg, 1)
	if !slices.Equal(got, []string{"s-0"}) {
		t.Fatalf("pods left %v, want [s-0]", got)
	}
}
