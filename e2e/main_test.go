package e2e

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebbq/ebb/internal/testbin"
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
	if err := testbin.BuildEbb(ebbBin); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Printf("e2e: built ebb in %s\n", time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
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
