package k8s

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/procgroup"
	"github.com/ebbq/ebb/internal/target"
	"github.com/ebbq/ebb/internal/target/kubernetes"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(cleanEnv(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	return cmd.CombinedOutput()
}

// TestHelmChart: lint --strict and template pass, a chart without a
// broker and token refuses to render, helm install into the real API server
// creates objects it accepts, and every rendering (plain, KEDA mode, the
// kustomize manifests) passes the server's strict validation.
func TestHelmChart(t *testing.T) {
	t.Parallel()
	startKEDA(t) // its CRDs validate the ScaledObject
	ctx := context.Background()
	secret := []string{"--set", "secret.broker=redis://127.0.0.1:1/0", "--set", "secret.token=0123456789abcdef0123"}
	for _, extra := range [][]string{nil, {"--set", "keda.enabled=true"}} {
		if out, err := helm(t, append(append([]string{"lint", "--strict", chartDir()}, secret...), extra...)...); err != nil {
			t.Fatalf("helm lint --strict %v: %v\n%s", extra, err, out)
		}
	}
	out, err := helm(t, "template", release, chartDir())
	if err == nil || !strings.Contains(string(out), "set secret.existingSecret, or both secret.broker and secret.token") {
		t.Fatalf("helm template without a secret = %v\n%s\nwant a refusal naming the values to set", err, out)
	}

	for _, extra := range [][]string{nil, {"--set", "keda.enabled=true"}} {
		ns := namespace(t)
		rendered, err := helm(t, append(append([]string{"template", release, chartDir(), "--namespace", ns}, secret...), extra...)...)
		if err != nil {
			t.Fatalf("helm template %v: %v\n%s", extra, err, rendered)
		}
		if _, err := cluster.Kubectl(ctx, "-n", ns, "apply", "--dry-run=server", "--validate=strict", "-f", writeTemp(t, rendered)); err != nil {
			t.Fatalf("the server rejects the chart's objects (%v): %v", extra, err)
		}
	}

	ns := namespace(t)
	if out, err := helm(t, append([]string{"install", release, chartDir(), "--namespace", ns, "--kubeconfig", cluster.Kubeconfig, "--wait=false"}, secret...)...); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	d, err := cluster.Client.AppsV1().Deployments(ns).Get(ctx, release+"-worker-default", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("helm install made no worker Deployment: %v", err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
		t.Fatalf("the worker Deployment starts at %v replicas, want 0", d.Spec.Replicas)
	}
	if tg := d.Spec.Template.Spec.TerminationGracePeriodSeconds; tg == nil || *tg != 600 {
		t.Errorf("terminationGracePeriodSeconds = %v, want the documented 600", tg)
	}
	if c := d.Spec.Template.Spec.Containers[0]; c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Errorf("the worker container lacks its preStop hook or probes: %+v", c)
	}
	for _, obj := range []func() error{
		func() error {
			_, err := cluster.Client.AppsV1().Deployments(ns).Get(ctx, release+"-server", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := cluster.Client.CoreV1().Services(ns).Get(ctx, release, metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := cluster.Client.CoreV1().Secrets(ns).Get(ctx, release+"-secret", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := cluster.Client.RbacV1().Roles(ns).Get(ctx, release+"-server", metav1.GetOptions{})
			return err
		},
	} {
		if err := obj(); err != nil {
			t.Errorf("after helm install: %v", err)
		}
	}
	// An upgrade keeps a count the control plane set.
	if _, err := cluster.Kubectl(ctx, "-n", ns, "scale", "deployment/"+release+"-worker-default", "--replicas=3"); err != nil {
		t.Fatal(err)
	}
	if out, err := helm(t, append([]string{"upgrade", release, chartDir(), "--namespace", ns, "--kubeconfig", cluster.Kubeconfig}, secret...)...); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	s, err := cluster.Client.AppsV1().Deployments(ns).GetScale(ctx, release+"-worker-default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Spec.Replicas != 3 {
		t.Errorf("helm upgrade reset the worker count to %d; want the 3 the control plane had set", s.Spec.Replicas)
	}

	// The plain manifests are the chart rendered, kept in sync by a script,
	// and the server accepts them strictly.
	cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", "render-manifests"), "--check")
	cmd.Env = append(cleanEnv(), "EBB_K8S_BIN="+cluster.Bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/kubernetes is out of date with the chart: %v\n%s", err, out)
	}
	kust, err := cluster.Kubectl(ctx, "kustomize", filepath.Join(repoRoot, "deploy", "kubernetes"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Kubectl(ctx, "create", "namespace", "ebb"); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		t.Fatal(err)
	}
	if _, err := cluster.Kubectl(ctx, "apply", "--dry-run=server", "--validate=strict", "-f", writeTemp(t, kust)); err != nil {
		t.Fatalf("the server rejects the kustomize manifests: %v", err)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "manifests.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRBACIsExactlyEnough: the Kubernetes target does its whole job (scale
// out, list, mark, retire) as the chart's server service account; verbs the
// Role does not grant are denied and were not needed; and taking away any
// verb it does grant breaks the target, so none is superfluous.
func TestRBACIsExactlyEnough(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := poolValues{Name: "rbac", Max: 3, Concurrency: 1, DrainTimeout: "30s"}
	ns := namespace(t)
	kubectlApply(t, ns, helmTemplate(t, ns, p.write(t), "serviceaccount.yaml", "rbac.yaml", "workers.yaml"))
	user := "system:serviceaccount:" + ns + ":" + release + "-server"
	deploy := release + "-worker-rbac"
	tg, err := kubernetes.New(kubernetes.Config{Namespace: ns, Name: deploy, REST: cluster.As(user), MarkSettle: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Launch(ctx, 3); err != nil {
		t.Fatalf("Launch under the chart's Role: %v", err)
	}
	var pods []string
	testwait.Eventually(t, 60*time.Second, "3 running pods", func() (bool, error) {
		ins, err := tg.Instances(ctx)
		if err != nil {
			return false, err
		}
		pods = pods[:0]
		for _, in := range ins {
			if in.State == target.StateRunning {
				pods = append(pods, in.ID)
			}
		}
		return len(pods) == 3, nil
	})
	time.Sleep(time.Second) // kwok marks pods Ready just after Running
	if err := tg.Protect(ctx, pods[:1]); err != nil {
		t.Fatalf("Protect under the chart's Role: %v", err)
	}
	testwait.Eventually(t, 20*time.Second, "a drained pod retired", func() (bool, error) {
		if _, err := tg.Instances(ctx); err != nil {
			return false, err
		}
		if err := tg.Retire(ctx, pods[1:2]); err != nil {
			return false, err
		}
		s, err := cluster.Client.AppsV1().Deployments(ns).GetScale(ctx, deploy, metav1.GetOptions{})
		return err == nil && s.Spec.Replicas == 2, err
	})

	// Denied, and the target never needed them.
	for _, verb := range []string{"watch pods", "get pods", "delete pods", "create pods", "update deployments/scale",
		"get deployments", "patch deployments", "get secrets", "list deployments"} {
		v, res, _ := strings.Cut(verb, " ")
		out, _ := cluster.Kubectl(ctx, "-n", ns, "auth", "can-i", v, res, "--as", user)
		if strings.TrimSpace(string(out)) != "no" {
			t.Errorf("the chart's Role allows %s (%s); the target does not need it", verb, strings.TrimSpace(string(out)))
		}
	}
	if out, _ := cluster.Kubectl(ctx, "-n", "default", "auth", "can-i", "list", "pods", "--as", user); strings.TrimSpace(string(out)) != "no" {
		t.Errorf("the chart's Role reaches outside its namespace")
	}

	// Each granted verb is needed: without it, the operation that uses it
	// is forbidden.
	rules := []struct {
		drop string // "resource verb"
		op   func() error
	}{
		{"deployments/scale get", func() error { _, err := tg.Instances(ctx); return err }},
		{"deployments/scale patch", func() error { _, err := tg.Launch(ctx, 1); return err }},
		{"pods list", func() error { _, err := tg.Instances(ctx); return err }},
		{"pods patch", func() error { return tg.Protect(ctx, pods[2:3]) }},
	}
	for _, r := range rules {
		setRole(t, ns, deploy, r.drop)
		testwait.Eventually(t, 20*time.Second, "forbidden without "+r.drop, func() (bool, error) {
			err := r.op()
			return err != nil && strings.Contains(err.Error(), "forbidden"), nil
		})
		setRole(t, ns, deploy, "")
		testwait.Eventually(t, 20*time.Second, "allowed again with "+r.drop, func() (bool, error) {
			return r.op() == nil, nil
		})
	}
}

// setRole rewrites the chart's Role with one verb dropped ("" restores it).
func setRole(t *testing.T, ns, deploy, drop string) {
	t.Helper()
	scaleVerbs := slices.DeleteFunc([]string{"get", "patch"}, func(v string) bool { return "deployments/scale "+v == drop })
	podVerbs := slices.DeleteFunc([]string{"list", "patch"}, func(v string) bool { return "pods "+v == drop })
	role := map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
		"metadata": map[string]any{"name": release + "-server", "namespace": ns},
		"rules": []map[string]any{
			{"apiGroups": []string{"apps"}, "resources": []string{"deployments/scale"}, "resourceNames": []string{deploy}, "verbs": scaleVerbs},
			{"apiGroups": []string{""}, "resources": []string{"pods"}, "verbs": podVerbs},
		},
	}
	b, _ := json.Marshal(role)
	kubectlApply(t, ns, b)
}

// TestDockerfileBinary builds ebb exactly as the Dockerfile does, checks
// that the binary is static (it runs on a distroless base with no libc), and
// starts each command the chart runs with the chart's own arguments: the
// server, the worker with its probes, and the worker's preStop hook, which
// drains it.
func TestDockerfileBinary(t *testing.T) {
	t.Parallel()
	bin := buildLikeDockerfile(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("the image's binary needs a dynamic loader (PT_INTERP): it would not start on a distroless static base")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the image's binary links %v", libs)
	}
	f.Close()

	ctx := context.Background()
	rs := testredis.Start(t)
	ns := "ebb"
	rendered, err := helm(t, "template", release, chartDir(), "--namespace", ns, "--set", "secret.existingSecret=s", "--set", "keda.enabled=true")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, rendered)
	}
	var server, worker *corev1.Container
	var cfg string
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(rendered), 4096)
	for {
		var obj struct {
			Kind string `json:"kind"`
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			break
		}
		_ = json.Unmarshal(raw, &obj)
		switch obj.Kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			c := d.Spec.Template.Spec.Containers[0]
			if c.Name == "server" {
				server = &c
			} else {
				worker = &c
			}
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := json.Unmarshal(raw, &cm); err != nil {
				t.Fatal(err)
			}
			cfg = cm.Data["ebb.yaml"]
		}
	}
	if server == nil || worker == nil || cfg == "" {
		t.Fatalf("the chart renders no server, worker or config (server %v, worker %v)", server != nil, worker != nil)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "ebb.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	// The server, with the chart's args; loopback ports instead of the
	// pod's, the test cluster's kubeconfig instead of the service account.
	api := "127.0.0.1:" + strconv.Itoa(freePort(t))
	kedaAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := slices.Clone(server.Args)
	for i := range args {
		switch {
		case args[i] == "/etc/ebb/ebb.yaml":
			args[i] = cfgPath
		case i > 0 && args[i-1] == "--keda-addr":
			args[i] = kedaAddr
		}
	}
	srv := startBin(t, bin, filepath.Join(dir, "server.log"), []string{"EBB_BROKER=" + rs.URL(), "EBB_TOKEN=0123456789abcdef0123",
		"EBB_LISTEN=" + api, "KUBECONFIG=" + cluster.Kubeconfig}, args...)
	testwait.Eventually(t, 30*time.Second, "the image's server command ready", func() (bool, error) {
		if srv.ProcessState != nil {
			return false, errors.New("the server exited")
		}
		resp, err := http.Get("http://" + api + server.ReadinessProbe.HTTPGet.Path)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && listening(kedaAddr), nil
	})

	// The worker, with the chart's args and the downward API's POD_NAME.
	health := "127.0.0.1:" + strconv.Itoa(freePort(t))
	wargs := slices.Clone(worker.Args)
	for i := range wargs {
		if i > 0 && wargs[i-1] == "--health-addr" {
			wargs[i] = health
		}
	}
	wk := startBin(t, bin, filepath.Join(dir, "worker.log"), []string{"EBB_BROKER=" + rs.URL(), "POD_NAME=ebb-worker-default-abc12"}, wargs...)
	var h ebb.WorkerHealth
	for _, probe := range []string{worker.ReadinessProbe.HTTPGet.Path, worker.LivenessProbe.HTTPGet.Path} {
		testwait.Eventually(t, 30*time.Second, "worker "+probe, func() (bool, error) {
			resp, err := http.Get("http://" + health + probe)
			if err != nil {
				return false, nil
			}
			defer resp.Body.Close()
			_ = json.NewDecoder(resp.Body).Decode(&h)
			return resp.StatusCode == http.StatusOK, nil
		})
	}
	// The preStop hook, as the chart writes it, against this worker.
	hook := slices.Clone(worker.Lifecycle.PreStop.Exec.Command)
	if hook[0] != "/ebb" {
		t.Fatalf("the preStop hook runs %q, not the image's /ebb", hook[0])
	}
	for i := range hook {
		if i > 0 && hook[i-1] == "--health-addr" {
			hook[i] = health
		}
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(hctx, bin, hook[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("the preStop hook failed: %v\n%s", err, out)
	}
	resp, err := http.Get("http://" + health + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if !h.Drained {
		t.Errorf("after the preStop hook the worker reports %+v, want drained", h)
	}
	for name, c := range map[string]*exec.Cmd{"worker": wk, "server": srv} {
		_ = procgroup.Signal(c.Process.Pid, syscall.SIGTERM)
		if err := waitExit(c, 30*time.Second); err != nil {
			t.Errorf("the image's %s command after SIGTERM: %v", name, err)
		}
	}
	if out, err := exec.Command(bin, "worker-prestop", "--help").CombinedOutput(); err != nil && !strings.Contains(string(out), "health-addr") {
		t.Errorf("worker-prestop --help: %v\n%s", err, out)
	}
}

func startBin(t *testing.T, bin, logPath string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(cleanEnv(), env...)
	cmd.SysProcAttr = procgroup.SysProcAttr(syscall.SIGKILL)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = procgroup.Signal(cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("--- %s (tail):\n%s", filepath.Base(logPath), tail(logPath, 20))
		}
	})
	return cmd
}

func waitExit(c *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return errors.New("did not exit")
	}
}

// buildLikeDockerfile runs the Dockerfile's `go build` line as it stands,
// with only its output path moved.
func buildLikeDockerfile(t *testing.T) string {
	t.Helper()
	df, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.SplitSeq(string(df), "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
			line = strings.TrimPrefix(l, "RUN ")
		}
	}
	if line == "" {
		t.Fatal("the Dockerfile has no RUN ... go build line")
	}
	var env, args []string
	for _, f := range shellFields(line) {
		if len(args) == 0 && strings.Contains(f, "=") {
			env = append(env, f)
			continue
		}
		args = append(args, f)
	}
	if args[0] != "go" || !slices.Contains(env, "CGO_ENABLED=0") {
		t.Fatalf("unexpected build line %q", line)
	}
	out := filepath.Join(t.TempDir(), "ebb")
	for i := range args {
		if i > 0 && args[i-1] == "-o" {
			args[i] = out
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = repoRoot
	// The test's own GOFLAGS (-race, -mod) are not the image's.
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOFLAGS=") }), env...)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, o)
	}
	return out
}

// shellFields splits a command line as sh would for the simple words a
// Dockerfile's RUN line uses: blanks separate, double quotes group.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	in, word := false, false
	for _, r := range s {
		switch {
		case r == '"':
			in, word = !in, true
		case (r == ' ' || r == '\t') && !in:
			if word {
				out = append(out, cur.String())
			}
			cur.Reset()
			word = false
		default:
			cur.WriteRune(r)
			word = true
		}
	}
	if word {
		out = append(out, cur.String())
	}
	return out
}
