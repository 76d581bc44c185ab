package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ebbBin is the `ebb` binary every test runs, built once by TestMain.
var ebbBin string

func TestMain(m *testing.M) {
	flag.Parse()
	raiseParallel(8)
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ebb-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ebbBin = filepath.Join(dir, "ebb")
	start := time.Now()
	if err := buildEbb(ebbBin); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Printf("e2e: built ebb in %s\n", time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// buildEbb builds ./cmd/ebb without -race even when the tests themselves run
// under it: the kill test pushes tens of thousands of tasks through the
// binary, and the race detector would slow it several times over.
func buildEbb(out string) error {
	cmd := exec.Command("go", "build", "-o", out, "github.com/ebbq/ebb/cmd/ebb")
	var env []string
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if f != "-race" && f != "--race" {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		env = append(env, kv)
	}
	cmd.Env = env
	output, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/ebb failed: %v\n%s", err, output)
	}
	return nil
}

// raiseParallel lifts -test.parallel to at least n unless it was set on the
// command line. Its default is GOMAXPROCS (2 on small CI machines), but these
// tests spend nearly all their time waiting for worker processes and for
// leases to expire, so running them two at a time would only add up their
// wall times.
func raiseParallel(n int) {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			set = true
		}
	})
	if set {
		return
	}
	if f := flag.Lookup("test.parallel"); f != nil {
		var cur int
		if _, err := fmt.Sscan(f.Value.String(), &cur); err == nil && cur < n {
			_ = f.Value.Set(fmt.Sprint(n))
		}
	}
}
