package ebbdrivertest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

func workerInfo(id string, now time.Time) ebbtype.WorkerInfo {
	return ebbtype.WorkerInfo{
		ID:          id,
		Pool:        "pool-1",
		Host:        "host-" + id,
		PID:         4242,
		Queues:      []string{"critical", "default"},
		Concurrency: 16,
		Busy:        3,
		StartedAt:   now.Add(-time.Hour),
		HeartbeatAt: now,
		Version:     "v1.2.3",
	}
}

func (f *fixture) heartbeat(info ebbtype.WorkerInfo, ttl time.Duration) *ebbdriver.WorkerControl {
	f.t.Helper()
	ctl, err := f.d.WorkerHeartbeat(f.ctx, info, ttl)
	if err != nil {
		f.t.Fatalf("WorkerHeartbeat(%s): %v", info.ID, err)
	}
	if ctl == nil {
		f.t.Fatalf("WorkerHeartbeat(%s) returned nil control", info.ID)
	}
	return ctl
}

func (f *fixture) workers(now time.Time) []ebbtype.WorkerInfo {
	f.t.Helper()
	ws, err := f.d.WorkerList(f.ctx, now)
	if err != nil {
		f.t.Fatalf("WorkerList: %v", err)
	}
	return ws
}

func workerIDs(ws []ebbtype.WorkerInfo) []string {
	ids := make([]string, len(ws))
	for i, w := range ws {
		ids[i] = w.ID
	}
	return ids
}

func checkWorker(t *testing.T, want, got ebbtype.WorkerInfo) {
	t.Helper()
	p := "worker " + want.ID + " "
	check(t, p+"ID", want.ID, got.ID)
	check(t, p+"Pool", want.Pool, got.Pool)
	check(t, p+"Host", want.Host, got.Host)
	check(t, p+"PID", want.PID, got.PID)
	checkSlice(t, p+"Queues", want.Queues, got.Queues)
	check(t, p+"Concurrency", want.Concurrency, got.Concurrency)
	check(t, p+"Busy", want.Busy, got.Busy)
	checkTime(t, p+"StartedAt", want.StartedAt, got.StartedAt)
	checkTime(t, p+"HeartbeatAt", want.HeartbeatAt, got.HeartbeatAt)
	check(t, p+"Draining", want.Draining, got.Draining)
	check(t, p+"Drained", want.Drained, got.Drained)
	check(t, p+"Version", want.Version, got.Version)
}

func testWorker(t *testing.T, newDriver Factory) {
	t.Run("Drain", func(t *testing.T) {
		f := setup(t, newDriver)
		now := msNow()
		w1, w2 := workerInfo("w1", now), workerInfo("w2", now)
		check(t, "w1 DrainRequested before", false, f.heartbeat(w1, time.Minute).DrainRequested)
		f.heartbeat(w2, time.Minute)
		ch := f.listen(ebbdriver.ListenParams{WorkerID: "w1"})
		// A worker listens to its queues and its id on one subscription.
		chQ := f.listen(ebbdriver.ListenParams{Queues: w1.Queues, WorkerID: "w1"})

		if err := f.d.WorkerRequestDrain(f.ctx, "w1", now); err != nil {
			t.Fatalf("WorkerRequestDrain: %v", err)
		}
		waitEvent(t, ch, "EventDrain for w1", func(ev ebbdriver.Event) bool {
			return ev.Kind == ebbdriver.EventDrain && ev.WorkerID == "w1"
		}, func(ev ebbdriver.Event) bool {
			return ev.Kind != ebbdriver.EventDrain // a drain for another worker is wrong
		})
		waitEvent(t, chQ, "EventDrain for w1 on the queue-filtered listener", func(ev ebbdriver.Event) bool {
			return ev.Kind == ebbdriver.EventDrain && ev.WorkerID == "w1"
		}, nil)
		w1.HeartbeatAt = now.Add(time.Second)
		check(t, "w1 DrainRequested after request", true, f.heartbeat(w1, time.Minute).DrainRequested)
		w2.HeartbeatAt = now.Add(time.Second)
		check(t, "w2 DrainRequested", false, f.heartbeat(w2, time.Minute).DrainRequested)
	})

	// Drained is what the control plane retires replicas by on platforms
	// that own the replica count: a driver that drops it would leave drained
	// workers running forever and have busy ones picked instead.
	t.Run("Drained", func(t *testing.T) {
		f := setup(t, newDriver)
		now := msNow()
		held, busy := workerInfo("held", now), workerInfo("busy", now)
		held.Busy, held.Draining, held.Drained = 0, true, true
		busy.Draining = true
		f.heartbeat(held, time.Minute)
		f.heartbeat(busy, time.Minute)
		ws := f.workers(now)
		checkSlice(t, "workers", []string{"busy", "held"}, workerIDs(ws))
		if len(ws) == 2 {
			checkWorker(t, busy, ws[0])
			checkWorker(t, held, ws[1])
		}
		// A later heartbeat carries it on; a drain request does not clear it.
		if err := f.d.WorkerRequestDrain(f.ctx, "held", now); err != nil {
			t.Fatalf("WorkerRequestDrain: %v", err)
		}
		held.HeartbeatAt = now.Add(time.Second)
		f.heartbeat(held, time.Minute)
		ws = f.workers(now.Add(time.Second))
		if len(ws) == 2 {
			checkWorker(t, held, ws[1])
		}
	})

	t.Run("DrainUnknown", func(t *testing.T) {
		f := setup(t, newDriver)
		now := msNow()
		err := f.d.WorkerRequestDrain(f.ctx, "nobody", now)
		checkErrIs(t, "WorkerRequestDrain(unknown)", err, ebbtype.ErrWorkerNotFound)

		f.heartbeat(workerInfo("gone", now), time.Minute)
		if err := f.d.WorkerDeregister(f.ctx, "gone"); err != nil {
			t.Fatalf("WorkerDeregister: %v", err)
		}
		err = f.d.WorkerRequestDrain(f.ctx, "gone", now)
		checkErrIs(t, "WorkerRequestDrain(deregistered)", err, ebbtype.ErrWorkerNotFound)
	})

	t.Run("Expiry", func(t *testing.T) {
		f := setup(t, newDriver)
		// The TTL may be native broker expiry: wall clock and a short TTL.
		const ttl = time.Second
		now := msNow()
		f.heartbeat(workerInfo("short", now), ttl)
		f.heartbeat(workerInfo("long", now), time.Hour)
		checkSlice(t, "workers", []string{"long", "short"}, workerIDs(f.workers(msNow())))

		poll(t, "worker gone after its TTL", func() bool {
			ws := f.workers(msNow())
			if slices.Contains(workerIDs(ws), "short") {
				return false
			}
			if time.Now().Before(now.Add(ttl)) {
				t.Errorf("worker expired before its TTL")
			}
			checkSlice(t, "workers after expiry", []string{"long"}, workerIDs(ws))
			return true
		})
		err := f.d.WorkerRequestDrain(f.ctx, "short", msNow())
		checkErrIs(t, "WorkerRequestDrain(expired)", err, ebbtype.ErrWorkerNotFound)
	})

	t.Run("ExpiryByNow", func(t *testing.T) {
		f := setup(t, newDriver)
		f.heartbeat(workerInfo("w1", f.now), time.Minute)
		checkSlice(t, "workers within the TTL", []string{"w1"}, workerIDs(f.workers(f.at(30*time.Second))))
		checkSlice(t, "workers past the TTL", nil, workerIDs(f.workers(f.at(2*time.Minute))))
		err := f.d.WorkerRequestDrain(f.ctx, "w1", f.at(2*time.Minute))
		checkErrIs(t, "WorkerRequestDrain past the TTL", err, ebbtype.ErrWorkerNotFound)

		// A refresh extends the entry from its new heartbeat.
		w1 := workerInfo("w1", f.at(50*time.Second))
		f.heartbeat(w1, time.Minute)
		checkSlice(t, "workers after refresh", []string{"w1"}, workerIDs(f.workers(f.at(100*time.Second))))
		if err := f.d.WorkerRequestDrain(f.ctx, "w1", f.at(100*time.Second)); err != nil {
			t.Errorf("WorkerRequestDrain within the refreshed TTL: %v", err)
		}
	})

	t.Run("HeartbeatListDeregister", func(t *testing.T) {
		f := setup(t, newDriver)
		now := msNow()
		if ws := f.workers(now); len(ws) != 0 {
			t.Fatalf("WorkerList of an empty broker = %+v", ws)
		}
		w2, w1, w3 := workerInfo("w2", now), workerInfo("w1", now), workerInfo("w3", now)
		w3.Pool, w3.Version, w3.Queues = "", "", []string{"only"}
		for _, w := range []ebbtype.WorkerInfo{w2, w1, w3} {
			if f.heartbeat(w, time.Minute).DrainRequested {
				t.Errorf("%s: DrainRequested without a request", w.ID)
			}
		}
		ws := f.workers(now)
		checkSlice(t, "workers", []string{"w1", "w2", "w3"}, workerIDs(ws))
		if len(ws) == 3 {
			checkWorker(t, w1, ws[0])
			checkWorker(t, w2, ws[1])
			checkWorker(t, w3, ws[2])
		}

		// A refresh replaces the entry.
		w1.Busy, w1.Draining, w1.HeartbeatAt = 16, true, now.Add(5*time.Second)
		f.heartbeat(w1, time.Minute)
		ws = f.workers(now.Add(5 * time.Second))
		if len(ws) != 3 {
			t.Fatalf("workers after refresh = %v", workerIDs(ws))
		}
		checkWorker(t, w1, ws[0])

		if err := f.d.WorkerDeregister(f.ctx, "w2"); err != nil {
			t.Fatalf("WorkerDeregister: %v", err)
		}
		checkSlice(t, "workers after deregister", []string{"w1", "w3"}, workerIDs(f.workers(now.Add(5*time.Second))))
		if err := f.d.WorkerDeregister(f.ctx, "w2"); err != nil && !errors.Is(err, ebbtype.ErrWorkerNotFound) {
			t.Errorf("second WorkerDeregister: %v", err)
		}
	})
}
