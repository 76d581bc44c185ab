package testkube

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // the test API server's self-signed certificate

// StartKEDA installs KEDA's CRDs and runs the real KEDA operator against
// the cluster, watching every namespace. Its metrics API server (the HPA's
// path from 1 to N replicas) is not run: it sits behind an APIService that
// needs an address the API server can reach, which loopback is not for
// aggregated APIs here; the operator itself does the 0↔1 activation.
func (c *Cluster) StartKEDA(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.Bin, "keda-operator")); err != nil {
		return fmt.Errorf("%w in %s: run scripts/k8s-bins: %v", errNoKEDA, c.Bin, err)
	}
	crds := filepath.Join(filepath.Dir(c.Bin), "keda-crds")
	if _, err := c.Kubectl(ctx, "create", "namespace", "keda"); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "apply", "--server-side", "-f", crds); err != nil {
		return err
	}
	certs := filepath.Join(c.Dir, "keda-certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=keda-test-ca",
			"-keyout", filepath.Join(certs, "ca.key"), "-out", filepath.Join(certs, "ca.crt")},
		{"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=keda-operator", "-keyout", filepath.Join(certs, "tls.key"),
			"-out", filepath.Join(certs, "tls.csr")},
		{"x509", "-req", "-in", filepath.Join(certs, "tls.csr"), "-CA", filepath.Join(certs, "ca.crt"),
			"-CAkey", filepath.Join(certs, "ca.key"), "-CAcreateserial", "-days", "2", "-out", filepath.Join(certs, "tls.crt")},
	} {
		if out, err := exec.CommandContext(ctx, "openssl", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("testkube: openssl %s: %v: %s", args[0], err, out)
		}
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	health := "127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.startEnv("keda-operator", "keda-operator",
		[]string{"WATCH_NAMESPACE=", "KEDA_CLUSTER_OBJECT_NAMESPACE=keda", "POD_NAMESPACE=keda", "OPERATOR_NAME=keda-operator"},
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(ports[0]), "--health-probe-bind-address="+health,
		"--metrics-service-bind-address=127.0.0.1:"+strconv.Itoa(ports[2]), "--cert-dir="+certs, "--ca-dir="+certs,
		"--enable-cert-rotation=false", "--enable-webhook-patching=false", "--enable-apiservice-patching=false"); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if resp, err := hc.Get("http://" + health + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("testkube: keda-operator not ready after 60s\n--- keda-operator log:\n%s", c.Log("keda-operator", 30))
}
