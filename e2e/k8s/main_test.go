// Package k8s holds the end-to-end tests of ebb on Kubernetes: `ebb server`
// scaling a Deployment the Helm chart made, on a real kube-apiserver,
// controller-manager and scheduler, with kwok playing the node. kwok runs
// no containers, so a pod runner here starts one local `ebb worker` process
// per Running pod — with the pod's own container args and its name as the
// worker id, as the downward API would give it — and SIGTERMs it when the
// pod is being deleted.
package k8s

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebbq/ebb/internal/testbin"

	"github.com/ebbq/ebb/internal/testkube"
)

var (
	// ebbBin is the `ebb` binary, built once.
	ebbBin string
	// cluster is shared by every test of the package.
	cluster *testkube.Cluster
	// repoRoot is the checkout (for the chart and the Dockerfile).
	repoRoot string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if repoRoot, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "ebb-e2e-k8s-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ebbBin = filepath.Join(dir, "ebb")
	if err := testbin.BuildEbb(ebbBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
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
