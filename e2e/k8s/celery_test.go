package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ebbq/ebb/internal/procgroup"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

// The Celery app of e2e/testdata/celery, run by Debian's Celery.
const (
	celeryPython = "/usr/bin/python3"
	celeryDB     = 3
	celeryPrefix = "app1:"
	celeryQueue  = "reports"
)

// TestCeleryPool: a Celery pool on a Deployment of the user's own (an
// unchanged Celery worker named --hostname $(POD_NAME)@%h, the chart's
// Role naming it): from zero to three pods and back, then bursts that scale
// in again; every task SUCCESS exactly once, no pod deleted while its
// worker ran a task, and every worker stopped consuming by ebb and then
// ended by Celery's warm shutdown on the kubelet's SIGTERM, exiting 0.
func TestCeleryPool(t *testing.T) {
	t.Parallel()
	if out, err := exec.Command(celeryPython, "-c", "import celery, redis").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import celery and redis (bash scripts/test installs python3-celery and python3-redis): %v: %s", celeryPython, err, out)
	}
	appDir, err := filepath.Abs("../testdata/celery")
	if err != nil {
		t.Fatal(err)
	}
	const name = "celery"
	ns := namespace(t)
	// The chart's service accounts and Role; the Deployment is the user's,
	// under the name the Role grants (the chart's worker name for the pool).
	kubectlApply(t, ns, helmTemplate(t, ns, poolValues{Name: name, Max: 3, Concurrency: 2, DrainTimeout: "30s"}.write(t),
		"serviceaccount.yaml", "rbac.yaml"))
	rs := testredis.Start(t)
	broker := fmt.Sprintf("redis://127.0.0.1:%d/%d", rs.Port, celeryDB)
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.Port), DB: celeryDB})
	t.Cleanup(func() { _ = rdb.Close() })
	p := &pool{t: t, ns: ns, name: name, deploy: release + "-worker-" + name, redis: rs.URL(), dir: t.TempDir()}

	appEnv := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "PYTHONPATH", Value: appDir}, {Name: "PYTHONDONTWRITEBYTECODE", Value: "1"},
		{Name: "EBB_CELERY_BROKER", Value: broker}, {Name: "EBB_CELERY_PREFIX", Value: celeryPrefix},
		{Name: "EBB_CELERY_QUEUE", Value: celeryQueue}, {Name: "EBB_CELERY_VISIBILITY", Value: "3600"},
	}
	labels := map[string]string{"app.kubernetes.io/instance": release, "app.kubernetes.io/component": "worker", "ebb.dev/pool": name}
	zero := int32(0)
	grace := int64(60)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: p.deploy, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name: "worker", Image: "registry.example/celery-app:test",
						Command: []string{celeryPython, "-m", "celery"},
						Args: []string{"-A", "fleet_tasks", "worker", "-Q", celeryQueue, "-c", "2", "--loglevel", "INFO",
							"--without-mingle", "--without-gossip", "-E", "--hostname", "$(POD_NAME)@%h"},
						Env: appEnv,
					}},
				},
			},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cluster.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	p.runner = startPodRunner(t, ns, "ebb.dev/pool="+name, rs.URL(), p.dir)
	p.runner.mu.Lock()
	p.runner.launch = celeryPodExec
	p.runner.busyAtDelete = func(pod string) bool { return celeryRunning(rdb, pod) }
	p.runner.mu.Unlock()

	q := strconv.Quote
	p.server(t, fmt.Sprintf(`pools:
  - name: %s
    queues: [%s]
    target: kubernetes
    kubernetes:
      namespace: %s
      deployment: %s
      kubeconfig: %s
    celery:
      broker: %s
      global_keyprefix: %s
    min: 0
    max: 3
    concurrency: 2
    policy:
      scale_down_delay: 1s
      idle_before_zero: 2s
`, name, celeryQueue, ns, p.deploy, q(serverKubeconfig(t, ns)), q(broker), q(celeryPrefix)))

	produce := func(count, seconds string) []string {
		t.Helper()
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		cmd := exec.CommandContext(cctx, celeryPython, "produce.py", count, seconds)
		cmd.Dir = appDir
		cmd.Env = append(cleanEnv(), "PYTHONDONTWRITEBYTECODE=1", "EBB_CELERY_BROKER="+broker,
			"EBB_CELERY_PREFIX="+celeryPrefix, "EBB_CELERY_QUEUE="+celeryQueue)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("produce.py: %v: %s", err, stderrOf(err))
		}
		var res struct {
			IDs []string `json:"ids"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("produce.py printed %q: %v", out, err)
		}
		return res.IDs
	}
	list := func(key string) []string {
		t.Helper()
		v, err := rdb.LRange(context.Background(), celeryPrefix+key, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	waitDone := func(ids []string) {
		t.Helper()
		want := map[string]bool{}
		for _, id := range ids {
			want[id] = true
		}
		testwait.Eventually(t, 3*time.Minute, fmt.Sprintf("%d Celery tasks done", len(ids)), func() (bool, error) {
			n := 0
			for _, id := range list("e2e:done") {
				if want[id] {
					n++
				}
			}
			return n >= len(ids), nil
		})
	}
	atZero := func() {
		t.Helper()
		testwait.Eventually(t, 90*time.Second, "back to 0 replicas and no worker running", func() (bool, error) {
			return p.replicas(t) == 0 && p.runner.running() == 0, nil
		})
	}

	w := watchReplicas(t, p, 3)
	all := produce("24", "1")
	waitDone(all)
	atZero()
	for burst := range 2 {
		ids := produce(strconv.Itoa(1+burst), "2")
		waitDone(ids)
		atZero()
		all = append(all, ids...)
	}
	w.close()
	if w.maxSeen != 3 {
		t.Errorf("replicas peaked at %d, want 3", w.maxSeen)
	}

	// Exactly once, and SUCCESS in the result backend.
	runs := map[string]int{}
	for _, r := range list("e2e:runs") {
		id, _, _ := strings.Cut(r, " ")
		runs[id]++
	}
	done := map[string]int{}
	for _, id := range list("e2e:done") {
		done[id]++
	}
	for _, id := range all {
		if runs[id] != 1 || done[id] != 1 {
			t.Errorf("task %s ran %d times and finished %d times, want once each", id, runs[id], done[id])
		}
	}
	testwait.Eventually(t, 10*time.Second, "every result SUCCESS", func() (bool, error) {
		for _, id := range all {
			v, err := rdb.Get(context.Background(), "celery-task-meta-"+id).Result()
			if err != nil {
				return false, nil
			}
			var r struct {
				Status string `json:"status"`
			}
			if json.Unmarshal([]byte(v), &r) != nil || r.Status != "SUCCESS" {
				return false, fmt.Errorf("task %s: %s", id, v)
			}
		}
		return true, nil
	})

	p.runner.mu.Lock()
	busy := append([]string(nil), p.runner.busyDeleted...)
	procs := p.runner.procs
	p.runner.mu.Unlock()
	if len(busy) > 0 {
		t.Errorf("pods deleted while their Celery worker ran a task: %v", busy)
	}
	if len(procs) < 4 {
		t.Errorf("%d pods ran, want at least 4 (three, then one per burst)", len(procs))
	}
	for pod, wp := range procs {
		<-wp.exited
		if wp.termAt.IsZero() {
			t.Errorf("pod %s's worker exited without its pod being deleted", pod)
		}
		if st := wp.cmd.ProcessState; st == nil || st.ExitCode() != 0 {
			t.Errorf("pod %s's worker ended with %v, want exit 0", pod, st)
		}
		b, _ := os.ReadFile(wp.log)
		l := string(b)
		if !strings.Contains(l, pod+"@") || !strings.Contains(l, "Canceling queue "+celeryQueue) ||
			!strings.Contains(l, "Warm shutdown (MainProcess)") || strings.Contains(l, "Restoring") {
			t.Errorf("pod %s's worker was not named after its pod, stopped consuming, and ended by a warm shutdown holding nothing; its log:\n%s", pod, tail(wp.log, 40))
		}
	}
	t.Logf("Celery on Kubernetes: %d tasks SUCCESS once each, %d pods, each retired after it stopped consuming and held nothing", len(all), len(procs))
}

// celeryPodExec runs a pod's container as the kubelet would: command and
// args with $(VAR) expanded from the container's env (the downward API's
// POD_NAME is the pod's name), that env, and a process group of its own.
func celeryPodExec(t *testing.T, pod *corev1.Pod, logPath string) *exec.Cmd {
	c := pod.Spec.Containers[0]
	vars := map[string]string{}
	env := cleanEnv()
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			v = pod.Name
		}
		vars[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	var argv []string
	for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
		for k, v := range vars {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		argv = append(argv, a)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if logf, err := os.Create(logPath); err == nil {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	cmd.Env = env
	cmd.SysProcAttr = procgroup.SysProcAttr(syscall.SIGKILL)
	if err := cmd.Start(); err != nil {
		// The runner needs a process to wait for and signal: one that
		// exits at once stands for the container that failed.
		t.Errorf("starting pod %s's container: %v", pod.Name, err)
		cmd = exec.Command("true")
		_ = cmd.Start()
	}
	return cmd
}

// celeryRunning reports whether the worker of pod has started a task that
// has not finished, by the app's own records; unreadable records count as
// running, which fails the test rather than hiding a deletion.
func celeryRunning(rdb *redis.Client, pod string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	runs, err := rdb.LRange(ctx, celeryPrefix+"e2e:runs", 0, -1).Result()
	if err != nil {
		return true
	}
	done, err := rdb.LRange(ctx, celeryPrefix+"e2e:done", 0, -1).Result()
	if err != nil {
		return true
	}
	finished := map[string]bool{}
	for _, id := range done {
		finished[id] = true
	}
	for _, r := range runs {
		if id, host, _ := strings.Cut(r, " "); strings.HasPrefix(host, pod+"@") && !finished[id] {
			return true
		}
	}
	return false
}
