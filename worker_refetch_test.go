package ebb_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

// replyLosingDriver makes the broker's first fetch that claims something
// look as if its reply was lost in transit: the claims are stored, the
// worker gets an error.
type replyLosingDriver struct {
	ebbdriver.Driver
	toLose  atomic.Int32
	retries atomic.Int32
}

func (d *replyLosingDriver) Fetch(ctx context.Context, p ebbdriver.FetchParams) (*ebbdriver.FetchResult, error) {
	if p.Retry {
		d.retries.Add(1)
	}
	res, err := d.Driver.Fetch(ctx, p)
	if err == nil && len(res.Tasks) > 0 && d.toLose.Add(-1) >= 0 {
		return nil, errors.New("read tcp 127.0.0.1:1->127.0.0.1:6379: connection reset by peer")
	}
	return res, err
}

// TestWorkerRecoversLostFetchReply: tasks claimed by a fetch whose reply
// never arrived run at once, well before their one-minute lease would let
// anyone else take them: the worker repeats the fetch under the same token
// and gets its claims back.
func TestWorkerRecoversLostFetchReply(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		open func(t *testing.T) ebbdriver.Driver
	}{
		{"SQLite", func(t *testing.T) ebbdriver.Driver {
			drv, err := ebbsqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ebb.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			return drv
		}},
		{"Redis", func(t *testing.T) ebbdriver.Driver {
			drv, err := ebbredis.Open(t.Context(), testredis.URL(), &ebbredis.Config{Prefix: testredis.Prefix(t)})
			if err != nil {
				t.Fatal(err)
			}
			return drv
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			real := tc.open(t)
			defer real.Close()
			drv := &replyLosingDriver{Driver: real}
			drv.toLose.Store(1)
			r := newRig(t, withDriver(drv))
			var ran atomic.Int32
			ebb.HandleRaw(r.handlers, "job", func(context.Context, *ebb.Task[json.RawMessage]) (any, error) {
				ran.Add(1)
				return nil, nil
			})
			var ids []string
			for range 3 {
				res, err := r.client.EnqueueRaw(r.ctx, "job", []byte(`{}`), nil)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, res.ID)
			}
			// No maintenance: nothing but the worker's retry can bring the
			// claims back within the lease.
			w := r.start(&ebb.WorkerConfig{LeaseDuration: time.Minute, DisableMaintenance: true, PollInterval: 50 * time.Millisecond})
			defer w.stop(t)
			err := testwait.Until(waitTimeout, func() (bool, error) {
				for _, id := range ids {
					ti, err := r.client.Task(r.ctx, id)
					if err != nil || ti.State != ebb.StateSucceeded {
						return false, err
					}
				}
				return true, nil
			})
			if err != nil {
				t.Fatalf("tasks of the fetch whose reply was lost did not succeed within %s (their lease is 1 min): %v", waitTimeout, err)
			}
			if drv.toLose.Load() >= 0 || drv.retries.Load() == 0 {
				t.Fatalf("no reply was lost (%d left to lose) or no fetch was retried (%d)", drv.toLose.Load(), drv.retries.Load())
			}
			if n := ran.Load(); n != 3 {
				t.Fatalf("handlers ran %d times, want 3 (each task once)", n)
			}
		})
	}
}
