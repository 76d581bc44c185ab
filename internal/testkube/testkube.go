// Package testkube starts a real Kubernetes control plane for tests: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, plus kwok,
// which plays the kubelet of one fake node (pods are scheduled onto it and
// reach Running and Ready, but no container runs), and on demand the real
// KEDA operator. Everything listens on free loopback ports and runs from
// the binaries scripts/k8s-bins builds once into a cache outside the
// checkout; scripts/test exports their folder as EBB_K8S_BIN. Without it,
// Start fails with what to run: the tests never skip.
//
// Service and pod addresses the API server allocates (10.0.0.0/24) exist
// only in its records; nothing may ever be sent to them.
package testkube

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ebbq/ebb/internal/procgroup"
)

// EnvBin names the folder holding the binaries.
const EnvBin = "EBB_K8S_BIN"

// NodeName is the fake node every pod lands on.
const NodeName = "kwok-node-0"

// Cluster is a running control plane.
type Cluster struct {
	// Dir holds the certificates, kubeconfig and every process's log.
	Dir string
	// Bin is the binaries' folder.
	Bin string
	// Server is the API server's URL (https://127.0.0.1:PORT).
	Server string
	// Token authenticates as a member of system:masters.
	Token string
	// Kubeconfig is an admin kubeconfig file.
	Kubeconfig string
	// REST is the admin client configuration; Client a client made from it.
	REST   *rest.Config
	Client k8s.Interface

	mu    sync.Mutex
	procs []*exec.Cmd
}

// BinDir returns the binaries' folder, or an error saying how to build it.
func BinDir() (string, error) {
	dir := os.Getenv(EnvBin)
	if dir == "" {
		return "", fmt.Errorf("testkube: %s is not set: run the tests through scripts/test, or run `export %s=$(scripts/k8s-bins)` first (it builds kube-apiserver, etcd, kwok, KEDA and helm once into ~/.cache/ebb)", EnvBin, EnvBin)
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("testkube: %s=%s has no %s: run scripts/k8s-bins to build the binaries: %w", EnvBin, dir, b, err)
		}
	}
	return dir, nil
}

// Start starts the control plane and the fake node, and returns once the
// node is Ready. Stop ends it.
func Start(ctx context.Context) (_ *Cluster, err error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ebb-testkube-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Bin: bin, Token: randHex(16)}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.writeFiles(); err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.start("etcd", "etcd", "--name", "t", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "t="+peerURL, "--listen-metrics-urls", "http://127.0.0.1:"+strconv.Itoa(ports[2]),
		"--quota-backend-bytes", "1073741824", "--unsafe-no-fsync"); err != nil {
		return nil, err
	}
	c.Server = "https://127.0.0.1:" + strconv.Itoa(ports[3])
	sa := filepath.Join(dir, "sa.key")
	if err := c.start("kube-apiserver", "kube-apiserver", "--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(ports[3]), "--cert-dir="+filepath.Join(dir, "certs"),
		"--service-account-key-file="+sa, "--service-account-signing-key-file="+sa,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24", "--disable-admission-plugins=ServiceAccount"); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	c.REST = &rest.Config{Host: c.Server, BearerToken: c.Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	if c.Client, err = k8s.NewForConfig(c.REST); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := c.start("kube-controller-manager", "kube-controller-manager", "--kubeconfig="+c.Kubeconfig,
		"--leader-elect=false", "--secure-port=0", "--service-account-private-key-file="+sa,
		"--root-ca-file="+filepath.Join(dir, "certs", "apiserver.crt"), "--use-service-account-credentials=false",
		// The defaults (20 and 5 concurrent syncs) are for big clusters;
		// the tests want a ReplicaSet to act at once.
		"--concurrent-replicaset-syncs=5", "--concurrent-deployment-syncs=5"); err != nil {
		return nil, err
	}
	if err := c.start("kube-scheduler", "kube-scheduler", "--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--secure-port=0"); err != nil {
		return nil, err
	}
	stages := filepath.Join(filepath.Dir(bin), "kwok-stages")
	kwokArgs := []string{"--kubeconfig=" + c.Kubeconfig, "--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake", "--node-ip=10.0.0.1",
		"--server-address=127.0.0.1:0"}
	for _, f := range []string{"node-fast-node-initialize.yaml", "node-heartbeat-node-heartbeat.yaml",
		"pod-fast-pod-ready.yaml", "pod-fast-pod-complete.yaml", "pod-fast-pod-delete.yaml"} {
		kwokArgs = append(kwokArgs, "--config="+filepath.Join(stages, f))
	}
	if err := c.start("kwok", "kwok", kwokArgs...); err != nil {
		return nil, err
	}
	if err := c.addNode(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) writeFiles() error {
	if err := os.WriteFile(filepath.Join(c.Dir, "tokens.csv"), []byte(c.Token+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		return err
	}
	out, err := exec.Command("openssl", "genrsa", "-out", filepath.Join(c.Dir, "sa.key"), "2048").CombinedOutput()
	if err != nil {
		return fmt.Errorf("testkube: openssl genrsa (install openssl): %v: %s", err, out)
	}
	return nil
}

func (c *Cluster) writeKubeconfig() error {
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	return os.WriteFile(c.Kubeconfig, []byte(KubeconfigFor(c.Server, c.Token, "default")), 0o600)
}

// KubeconfigFor is a kubeconfig for server with a bearer token, trusting
// the server's self-signed certificate.
func KubeconfigFor(server, token, namespace string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: t
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: %s
contexts:
- name: t
  context:
    cluster: t
    user: u
    namespace: %s
current-context: t
`, server, token, namespace)
}

// start runs a binary from the bin folder in its own process group, with
// its output in Dir/<name>.log; it dies with the test process.
func (c *Cluster) start(name, bin string, args ...string) error {
	return c.startEnv(name, bin, nil, args...)
}

func (c *Cluster) startEnv(name, bin string, env []string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(c.Bin, bin), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = procgroup.SysProcAttr(syscall.SIGKILL)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("testkube: starting %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	c.mu.Lock()
	c.procs = append(c.procs, cmd)
	c.mu.Unlock()
	return nil
}

// Log returns the last n lines of a process's log (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok, keda-operator), for
// failure messages.
func (c *Cluster) Log(name string, n int) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (c *Cluster) waitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := hc.Do(req)
		if err == nil {
			body := new(bytes.Buffer)
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body.String())
		} else {
			last = err.Error()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("testkube: kube-apiserver not ready after 90s (%s)\n--- kube-apiserver log:\n%s\n--- etcd log:\n%s",
		last, c.Log("kube-apiserver", 30), c.Log("etcd", 10))
}

// addNode creates the node kwok plays and waits until it is Ready.
func (c *Cluster) addNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        NodeName,
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
		Labels:      map[string]string{"kubernetes.io/hostname": NodeName, "type": "kwok"},
	}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("testkube: creating the fake node: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("testkube: the fake node did not become Ready in 60s\n--- kwok log:\n%s", c.Log("kwok", 30))
}

// Kubectl runs kubectl against the cluster as admin.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// As returns a client configuration that impersonates user (for example
// system:serviceaccount:NS:NAME), so that RBAC decides what it may do.
func (c *Cluster) As(user string) *rest.Config {
	cfg := rest.CopyConfig(c.REST)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	return cfg
}

// Stop kills every process (their process groups) and removes Dir.
func (c *Cluster) Stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		if p := procs[i].Process; p != nil {
			_ = procgroup.Signal(p.Pid, syscall.SIGKILL)
		}
	}
	for _, p := range procs {
		if p.Process != nil {
			procgroup.WaitUntilExited(p.Process.Pid)
		}
	}
	if os.Getenv("EBB_TESTKUBE_KEEP") == "" {
		_ = os.RemoveAll(c.Dir)
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreePort returns a loopback port nothing listens on now.
func FreePort() (int, error) {
	p, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var errNoKEDA = errors.New("testkube: no keda-operator")
