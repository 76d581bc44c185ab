package ebbredis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// workerInfoGrace keeps a worker's entry a while past its TTL. Liveness is
// decided by the sorted set against the caller's Now; heartbeats of other
// workers collect the entries of workers that expired longer ago than this
// (WorkerList drops every expired one).
const workerInfoGrace = 10 * time.Minute

// WorkerHeartbeat implements ebbdriver.Driver. The entry lives until
// info.HeartbeatAt+ttl (time.Now() when HeartbeatAt is zero).
func (d *Driver) WorkerHeartbeat(ctx context.Context, info ebbtype.WorkerInfo, ttl time.Duration) (*ebbdriver.WorkerControl, error) {
	if info.ID == "" {
		return nil, errors.New("ebbredis: worker heartbeat: empty worker id")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("ebbredis: worker heartbeat of %q: TTL %v must be positive", info.ID, ttl)
	}
	now := info.HeartbeatAt
	if now.IsZero() {
		now = time.Now()
	}
	js, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("ebbredis: worker heartbeat of %q: encode: %w", info.ID, err)
	}
	drain, err := d.run(ctx, scriptWorkerHeartbeat,
		[]string{d.workersKey(), d.workerInfoKey(), d.workerDrainKey()},
		info.ID, now.Add(ttl).UnixMilli(), string(js), now.Add(-workerInfoGrace).UnixMilli()).Int()
	if err != nil {
		return nil, fmt.Errorf("ebbredis: worker heartbeat of %q: %w", info.ID, err)
	}
	return &ebbdriver.WorkerControl{DrainRequested: drain == 1}, nil
}

// WorkerList implements ebbdriver.Driver. Entries expired at now are
// deleted on the way.
func (d *Driver) WorkerList(ctx context.Context, now time.Time) ([]ebbtype.WorkerInfo, error) {
	vals, err := d.run(ctx, scriptWorkerList, []string{d.workersKey(), d.workerInfoKey(), d.workerDrainKey()},
		now.UnixMilli()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("ebbredis: list workers: %w", err)
	}
	out := make([]ebbtype.WorkerInfo, 0, len(vals))
	for _, js := range vals {
		var w ebbtype.WorkerInfo
		if err := json.Unmarshal([]byte(js), &w); err != nil || w.ID == "" {
			continue // not ours to repair; the entry goes when its worker expires
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b ebbtype.WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// WorkerDeregister implements ebbdriver.Driver.
func (d *Driver) WorkerDeregister(ctx context.Context, id string) error {
	err := d.run(ctx, scriptWorkerDeregister,
		[]string{d.workersKey(), d.workerInfoKey(), d.workerDrainKey()}, id).Err()
	if err != nil {
		return fmt.Errorf("ebbredis: deregister worker %q: %w", id, err)
	}
	return nil
}

// WorkerRequestDrain implements ebbdriver.Driver.
func (d *Driver) WorkerRequestDrain(ctx context.Context, id string, now time.Time) error {
	payload, _ := json.Marshal(ctlMessage{Kind: "drain", Worker: id})
	ok, err := d.run(ctx, scriptWorkerDrain, []string{d.workersKey(), d.workerDrainKey()},
		id, now.UnixMilli(), d.chCtl, string(payload)).Int()
	if err != nil {
		return fmt.Errorf("ebbredis: request drain of worker %q: %w", id, err)
	}
	if ok != 1 {
		return fmt.Errorf("ebbredis: request drain of worker %q: %w", id, ebbtype.ErrWorkerNotFound)
	}
	return nil
}
