package ebb_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
)

var _ ebbdriver.FetchBatcher = (*ebbpostgres.Driver)(nil)

// limitWatch records the largest fetch a worker asked for.
type limitWatch struct {
	ebbdriver.Driver
	largest atomic.Int64
}

func (d *limitWatch) Fetch(ctx context.Context, p ebbdriver.FetchParams) (*ebbdriver.FetchResult, error) {
	for {
		old := d.largest.Load()
		if int64(p.Limit) <= old || d.largest.CompareAndSwap(old, int64(p.Limit)) {
			break
		}
	}
	return d.Driver.Fetch(ctx, p)
}

// batchingDriver is limitWatch offering batch as the driver's fetch cap.
type batchingDriver struct {
	*limitWatch
	batch int
}

func (d batchingDriver) FetchBatchMax() int { return d.batch }

// TestWorkerTakesTheDriversFetchBatch: with FetchBatchMax unset, a worker
// caps its fetches at what the driver offers (ebbdriver.FetchBatcher); a
// value in the config wins over it, and a driver that offers none leaves
// the worker's own cap, here above the driver's would-be 3.
func TestWorkerTakesTheDriversFetchBatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		offer      int // 0: the driver does not implement FetchBatcher
		configured int
		want       func(largest int64) bool
		wants      string
	}{
		{"driver's", 3, 0, func(n int64) bool { return n == 3 }, "3"},
		{"config's over driver's", 3, 5, func(n int64) bool { return n == 5 }, "5"},
		{"no offer", 0, 0, func(n int64) bool { return n > 3 }, "above 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			watch := &limitWatch{Driver: openSQLite(t)}
			var drv ebbdriver.Driver = watch
			if tc.offer > 0 {
				drv = batchingDriver{limitWatch: watch, batch: tc.offer}
			}
			client, err := ebb.NewClient(drv, nil)
			if err != nil {
				t.Fatal(err)
			}
			const n = 40
			enqueueNoops(t, client, n)
			handlers, all := noopsUntil(n)
			w, err := ebb.NewWorker(drv, &ebb.WorkerConfig{Handlers: handlers, Concurrency: 50, FetchBatchMax: tc.configured,
				Logger: quiet, DisableMaintenance: true})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error)
			go func() { done <- w.Run(ctx) }()
			select {
			case <-all:
			case <-time.After(30 * time.Second):
				t.Errorf("the %d tasks did not all run within 30 s", n)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := watch.largest.Load(); !tc.want(got) {
				t.Errorf("largest fetch asked for %d tasks, want %s", got, tc.wants)
			}
		})
	}
}
