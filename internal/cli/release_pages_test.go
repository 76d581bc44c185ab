package cli

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/procmem"
)

// startingWorker reports Running from its third health check on, with a
// heartbeat interval of beat.
type startingWorker struct {
	checks atomic.Int32
	beat   time.Duration
}

func (w *startingWorker) Health() ebb.WorkerHealth {
	return ebb.WorkerHealth{Running: w.checks.Add(1) >= 3, HeartbeatInterval: w.beat}
}

// The pages are released once the worker runs and again after its first
// round of periodic duties, never before it runs, and not after the
// context ends.
func TestReleaseStartupPagesTwiceAfterRunning(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := &startingWorker{beat: time.Millisecond}
	var releases []int32 // health checks seen at each release
	release := func() (procmem.Released, error) {
		releases = append(releases, w.checks.Load())
		return procmem.Released{}, nil
	}
	releaseStartupPages(context.Background(), logger, w, release)
	if len(releases) != 2 {
		t.Fatalf("released %d times, want 2 (at Running and after the first round)", len(releases))
	}
	if releases[0] < 3 {
		t.Fatalf("first release after %d health checks, before the worker ran", releases[0])
	}

	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		releaseStartupPages(ctx, logger, &startingWorker{beat: time.Hour}, func() (procmem.Released, error) {
			n++
			cancel()
			return procmem.Released{}, nil
		})
	}()
	<-done
	if n != 1 {
		t.Fatalf("released %d times with the context ended after the first, want 1", n)
	}
}
