package k8s

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/internal/procgroup"
	"github.com/ebbq/ebb/internal/testkube"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

// release is the Helm release name the tests render the chart with, so the
// worker Deployment of pool P is ebb-worker-P and the server's service
// account is ebb-server.
const release = "ebb"

var nsSeq atomic.Int64

func namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("e%d-%d", time.Now().UnixNano()%1e6, nsSeq.Add(1))
	_, err := cluster.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func helmBin(t *testing.T) string {
	t.Helper()
	p := filepath.Join(cluster.Bin, "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no helm in %s (run scripts/k8s-bins): %v", cluster.Bin, err)
	}
	return p
}

func chartDir() string { return filepath.Join(repoRoot, "deploy", "helm", "ebb") }

// poolValues is a values file for one pool.
type poolValues struct {
	Name, DrainTimeout string
	Max, Concurrency   int
	KEDA               bool
}

func (v poolValues) write(t *testing.T) string {
	t.Helper()
	vals := map[string]any{
		"secret": map[string]any{"existingSecret": "ebb-secret"},
		"keda":   map[string]any{"enabled": v.KEDA},
		"pools": []map[string]any{{
			"name": v.Name, "queues": []string{v.Name}, "max": v.Max, "concurrency": v.Concurrency,
			"drainTimeout": v.DrainTimeout, "terminationGracePeriodSeconds": 60,
		}},
	}
	b, _ := json.Marshal(vals) // JSON is YAML
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// helmTemplate renders templates of the chart for namespace ns.
func helmTemplate(t *testing.T, ns, values string, only ...string) []byte {
	t.Helper()
	args := []string{"template", release, chartDir(), "--namespace", ns, "-f", values}
	for _, o := range only {
		args = append(args, "--show-only", "templates/"+o)
	}
	out, err := exec.Command(helmBin(t), args...).Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderrOf(err))
	}
	return out
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func kubectlApply(t *testing.T, ns string, manifests []byte) {
	t.Helper()
	cmd := exec.Command(filepath.Join(cluster.Bin, "kubectl"), "--kubeconfig="+cluster.Kubeconfig, "-n", ns, "apply", "--validate=strict", "-f", "-")
	cmd.Stdin = bytes.NewReader(manifests)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
}

// serverKubeconfig is a kubeconfig that acts as the chart's server service
// account, so RBAC holds the control plane to the chart's Role.
func serverKubeconfig(t *testing.T, ns string) string {
	t.Helper()
	kc := testkube.KubeconfigFor(cluster.Server, cluster.Token, ns)
	kc = strings.Replace(kc, "    token: "+cluster.Token+"\n",
		"    token: "+cluster.Token+"\n    as: system:serviceaccount:"+ns+":"+release+"-server\n", 1)
	path := filepath.Join(t.TempDir(), "server-kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pool is one test's pool on the cluster: the chart's worker Deployment,
// service accounts and RBAC in a fresh namespace, a private Redis, a pod
// runner and (started separately) `ebb server`.
type pool struct {
	t      *testing.T
	ns     string
	name   string
	deploy string
	redis  string
	client *ebb.Client
	runner *podRunner
	dir    string
}

func newPool(t *testing.T, v poolValues) *pool {
	t.Helper()
	ns := namespace(t)
	values := v.write(t)
	kubectlApply(t, ns, helmTemplate(t, ns, values, "serviceaccount.yaml", "rbac.yaml", "workers.yaml"))
	rs := testredis.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The Secret the chart's pods read (KEDA resolves it too).
	_, err := cluster.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ebb-secret"},
		StringData: map[string]string{"broker": rs.URL(), "token": "0123456789abcdef0123"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := ebbredis.Open(ctx, rs.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &pool{t: t, ns: ns, name: v.Name, deploy: release + "-worker-" + v.Name, redis: rs.URL(), client: client, dir: t.TempDir()}
	p.runner = startPodRunner(t, ns, "ebb.dev/pool="+v.Name, rs.URL(), p.dir)
	return p
}

// server runs `ebb server` for the pool with the given policy.
func (p *pool) server(t *testing.T, cfg string, extraArgs ...string) (api string) {
	t.Helper()
	path := filepath.Join(p.dir, "ebb.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	api = "127.0.0.1:" + strconv.Itoa(port)
	args := append([]string{"server", "--config", path, "--broker", p.redis, "--listen", api}, extraArgs...)
	logPath := filepath.Join(p.dir, "server.log")
	cmd := startProc(t, logPath, nil, args...)
	t.Cleanup(func() {
		_ = procgroup.Signal(cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = procgroup.Signal(cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("--- server log (tail):\n%s", tail(logPath, 40))
		}
	})
	testwait.Eventually(t, 30*time.Second, "ebb server ready", func() (bool, error) {
		resp, err := http.Get("http://" + api + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return api
}

// poolConfig is ebb.yaml for a kubernetes pool driven by the server as the
// chart's service account.
func (p *pool) poolConfig(t *testing.T, maxWorkers, concurrency int, extra string) string {
	return fmt.Sprintf(`pools:
  - name: %s
    queues: [%s]
    target: kubernetes
    kubernetes:
      namespace: %s
      deployment: %s
      kubeconfig: %s
%s
    min: 0
    max: %d
    concurrency: %d
    drain_timeout: 30s
    policy:
      scale_down_delay: 1s
      idle_before_zero: 4s
`, p.name, p.name, p.ns, p.deploy, serverKubeconfig(t, p.ns), extra, maxWorkers, concurrency)
}

func (p *pool) replicas(t *testing.T) int32 {
	t.Helper()
	s, err := cluster.Client.AppsV1().Deployments(p.ns).GetScale(context.Background(), p.deploy, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Spec.Replicas
}

func (p *pool) enqueueSleep(t *testing.T, n int, ms func(i int) int) []string {
	t.Helper()
	params := make([]ebb.EnqueueParams, n)
	for i := range params {
		params[i] = ebb.EnqueueParams{Kind: "sleep", RawArgs: json.RawMessage(fmt.Sprintf(`{"ms": %d}`, ms(i))), Opts: &ebb.EnqueueOpts{Queue: p.name}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.client.EnqueueMany(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	return ids
}

// allSucceededFirstTime fails unless every task succeeded at attempt 1.
func (p *pool) allSucceededFirstTime(t *testing.T, ids []string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range ids {
		ti, err := p.client.Task(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ti.State != ebb.StateSucceeded || ti.Attempt != 1 {
			t.Errorf("task %s: state %s at attempt %d (errors %v), want succeeded at attempt 1", id, ti.State, ti.Attempt, ti.Errors)
		}
	}
}

func (p *pool) waitDone(t *testing.T, ids []string, timeout time.Duration) {
	t.Helper()
	testwait.Eventually(t, timeout, fmt.Sprintf("%d tasks finished", len(ids)), func() (bool, error) {
		for _, id := range ids {
			ti, err := p.client.Task(context.Background(), id)
			if err != nil {
				return false, err
			}
			if ti.State != ebb.StateSucceeded && ti.State != ebb.StateDead {
				return false, nil
			}
		}
		return true, nil
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := testkube.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func startProc(t *testing.T, logPath string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ebbBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(cleanEnv(), env...)
	cmd.SysProcAttr = procgroup.SysProcAttr(syscall.SIGKILL)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// cleanEnv is the test's environment without the variables ebb reads, so
// a developer's EBB_* settings or KUBECONFIG cannot leak into the run.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "EBB_") || strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "POD_NAME=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// podRunner plays the kubelet's part that kwok leaves out: for each pod of
// the selector that reaches Running it starts `ebb worker` with the pod's
// container args and POD_NAME set to the pod's name, and it SIGTERMs that
// process as soon as the API server reports the pod being deleted. It
// records when each pod was seen being deleted (from the watch), for the
// scale-in checks.
type podRunner struct {
	t      *testing.T
	broker string
	dir    string

	mu       sync.Mutex
	procs    map[string]*workerProc
	deleting map[string]time.Time // pod → when the watch first showed it being deleted
	stop     chan struct{}

	// launch, when set, runs a pod's container as the kubelet would (see
	// celeryPodExec) instead of `ebb worker` with its args, and SIGTERM goes
	// to the container's main process alone, as the kubelet sends it.
	launch func(t *testing.T, pod *corev1.Pod, logPath string) *exec.Cmd
	// busyAtDelete, when set, is asked as each pod is seen being deleted;
	// the pods it called busy are in busyDeleted.
	busyAtDelete func(pod string) bool
	busyDeleted  []string
}

type workerProc struct {
	pod     string
	cmd     *exec.Cmd
	log     string
	started time.Time
	termAt  time.Time
	exited  chan struct{}
}

func startPodRunner(t *testing.T, ns, selector, broker, dir string) *podRunner {
	r := &podRunner{t: t, broker: broker, dir: dir, procs: map[string]*workerProc{}, deleting: map[string]time.Time{}, stop: make(chan struct{})}
	f := informers.NewSharedInformerFactoryWithOptions(cluster.Client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.observe(obj, false) },
		UpdateFunc: func(_, obj any) { r.observe(obj, false) },
		DeleteFunc: func(obj any) { r.observe(obj, true) },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(r.stop)
	t.Cleanup(r.close)
	return r
}

func (r *podRunner) observe(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if deleted || pod.DeletionTimestamp != nil {
		if _, seen := r.deleting[pod.Name]; !seen {
			r.deleting[pod.Name] = now
		}
		if w := r.procs[pod.Name]; w != nil && w.termAt.IsZero() {
			w.termAt = now
			if r.busyAtDelete != nil && r.busyAtDelete(pod.Name) {
				r.busyDeleted = append(r.busyDeleted, pod.Name)
			}
			if r.launch != nil {
				_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGTERM)
			} else {
				_ = procgroup.Signal(w.cmd.Process.Pid, syscall.SIGTERM)
			}
		}
		return
	}
	if pod.Status.Phase != corev1.PodRunning || r.procs[pod.Name] != nil {
		return
	}
	select {
	case <-r.stop:
		return
	default:
	}
	logPath := filepath.Join(r.dir, "worker-"+pod.Name+".log")
	var cmd *exec.Cmd
	if r.launch != nil {
		cmd = r.launch(r.t, pod, logPath)
	} else {
		cmd = startProc(r.t, logPath, []string{"POD_NAME=" + pod.Name, "EBB_BROKER=" + r.broker}, podArgs(pod)...)
	}
	w := &workerProc{pod: pod.Name, cmd: cmd, log: logPath, started: now, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(w.exited) }()
	r.procs[pod.Name] = w
}

// podArgs are the pod's worker container args, with its health listener
// moved to a free loopback port (the pods share this machine's network)
// and, for the logs the checks read, a fast heartbeat and debug logging.
func podArgs(pod *corev1.Pod) []string {
	args := append([]string(nil), pod.Spec.Containers[0].Args...)
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--health-addr" {
			args[i+1] = "127.0.0.1:0"
		}
	}
	return append(args, "--heartbeat", "500ms", "--log-level", "debug")
}

func (r *podRunner) close() {
	close(r.stop)
	r.mu.Lock()
	procs := r.procs
	r.mu.Unlock()
	for _, w := range procs {
		_ = procgroup.Signal(w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.exited
	}
	if r.t.Failed() {
		for _, w := range procs {
			r.t.Logf("--- worker %s log (tail):\n%s", w.pod, tail(w.log, 15))
		}
	}
}

// running is how many worker processes run now.
func (r *podRunner) running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, w := range r.procs {
		select {
		case <-w.exited:
		default:
			n++
		}
	}
	return n
}

// logLine is one line of a worker's log: slog's text format.
type logLine struct {
	at  time.Time
	msg string
}

func readLog(path string) ([]logLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ts, rest, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		_, m, _ := strings.Cut(rest, "msg=")
		if strings.HasPrefix(m, `"`) {
			if uq, err := strconv.QuotedPrefix(m); err == nil {
				m, _ = strconv.Unquote(uq)
			}
		} else {
			m, _, _ = strings.Cut(m, " ")
		}
		out = append(out, logLine{at: at, msg: m})
	}
	return out, sc.Err()
}

// deletionReport checks every pod the API server deleted against its
// worker's log: at the moment the deletion was seen, the worker held no
// task (its "task started" lines up to then are matched by "task finished"
// lines), and, when wantDrained, it had reported itself drained before.
// It returns how many pods were deleted.
func (r *podRunner) deletionReport(t *testing.T, wantDrained bool) int {
	t.Helper()
	r.mu.Lock()
	deleting := make(map[string]time.Time, len(r.deleting))
	for k, v := range r.deleting {
		deleting[k] = v
	}
	procs := make(map[string]*workerProc, len(r.procs))
	for k, v := range r.procs {
		procs[k] = v
	}
	r.mu.Unlock()
	for pod, at := range deleting {
		w := procs[pod]
		if w == nil {
			continue // deleted before it ran: it never held anything
		}
		lines, err := readLog(w.log)
		if err != nil {
			t.Fatal(err)
		}
		held, drained := 0, false
		for _, l := range lines {
			if l.at.After(at) {
				break
			}
			switch {
			case l.msg == "task started":
				held++
			case l.msg == "task finished":
				held--
			case strings.HasPrefix(l.msg, "worker drained"):
				drained = true
			}
		}
		if held != 0 {
			t.Errorf("pod %s was deleted at %s while its worker held %d task(s)", pod, at.Format("15:04:05.000"), held)
		}
		if wantDrained && !drained {
			t.Errorf("pod %s was deleted at %s before its worker reported itself drained: the ReplicaSet picked a pod ebb did not retire", pod, at.Format("15:04:05.000"))
		}
	}
	return len(deleting)
}

// listenAddr reports whether something accepts connections on addr.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err == nil
}
