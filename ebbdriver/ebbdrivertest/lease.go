package ebbdrivertest

import (
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

func (f *fixture) extend(until, now time.Time, refs ...ebbdriver.LeaseRef) *ebbdriver.ExtendLeasesResult {
	f.t.Helper()
	res, err := f.d.ExtendLeases(f.ctx, ebbdriver.ExtendLeasesParams{Leases: refs, Until: until, Now: now})
	if err != nil {
		f.t.Fatalf("ExtendLeases: %v", err)
	}
	return res
}

func leaseRef(r *ebbtype.TaskInfo) ebbdriver.LeaseRef {
	return ebbdriver.LeaseRef{Queue: r.Queue, ID: r.ID, Token: r.LeaseToken}
}

func testExtendLeases(t *testing.T, newDriver Factory) {
	t.Run("CancelRequested", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"), f.task("a"))
		rs := f.fetch(f.now, 2, "a").Tasks
		check(t, "fetched", 2, len(rs))
		if st, err := f.d.TaskCancel(f.ctx, rs[0].ID, f.now); err != nil || st != ebbtype.StateRunning {
			t.Fatalf("TaskCancel of running task = %q, %v; want running", st, err)
		}
		res := f.extend(f.at(time.Minute), f.at(10*time.Second), leaseRef(rs[0]), leaseRef(rs[1]))
		checkSlice(t, "CancelRequested", ids(rs[0]), res.CancelRequested)
		checkSlice(t, "Lost", nil, res.Lost)
	})

	t.Run("Extends", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"), f.task("a"))
		rs := f.fetch(f.now, 2, "a").Tasks
		check(t, "fetched", 2, len(rs))
		until := f.at(5 * time.Minute)
		res := f.extend(until, f.at(20*time.Second), leaseRef(rs[0]), leaseRef(rs[1]))
		checkSlice(t, "Lost", nil, res.Lost)
		checkSlice(t, "CancelRequested", nil, res.CancelRequested)
		for _, r := range rs {
			got := f.requireState(r.ID, ebbtype.StateRunning)
			checkTime(t, "LeaseExpiresAt", until, got.LeaseExpiresAt)
			check(t, "LeaseToken", r.LeaseToken, got.LeaseToken)
		}
		// Past the original lease but within the extension: not rescued.
		rescued, err := f.d.RescueExpired(f.ctx, "a", f.at(time.Minute), 10)
		if err != nil {
			t.Fatalf("RescueExpired: %v", err)
		}
		if len(rescued.Requeued)+len(rescued.Dead) != 0 {
			t.Errorf("RescueExpired inside the extended lease = %+v, want nothing", rescued)
		}
		rescued, err = f.d.RescueExpired(f.ctx, "a", until.Add(time.Second), 10)
		if err != nil {
			t.Fatalf("RescueExpired: %v", err)
		}
		checkSet(t, "rescued after the extended lease", taskIDs(rs), rescued.Requeued)
	})

	t.Run("Lost", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a", withRunAt(f.at(-2*time.Second))), f.task("a", withRunAt(f.at(-time.Second))), f.task("a"))
		rescued := f.fetchOne(f.now, "a")
		p := fetchParams(f.now, 1, "a")
		p.LeaseDuration = time.Hour
		kept := f.fetchWith(p).Tasks[0]
		p = fetchParams(f.now, 1, "a")
		p.LeaseDuration = time.Hour
		finished := f.fetchWith(p).Tasks[0]
		f.completeOK(succeed(finished, f.now, `1`))

		// rescued's lease runs out, it is requeued and claimed anew.
		res, err := f.d.RescueExpired(f.ctx, "a", f.at(time.Minute), 10)
		if err != nil {
			t.Fatalf("RescueExpired: %v", err)
		}
		checkSlice(t, "rescued", ids(rescued), res.Requeued)
		reclaimed := f.fetchOne(f.at(time.Minute), "a")
		check(t, "reclaimed", rescued.ID, reclaimed.ID)

		wrongToken := leaseRef(kept)
		wrongToken.Token = "not-the-token"
		unknown := ebbdriver.LeaseRef{Queue: "a", ID: newTask("a", f.now).ID, Token: kept.LeaseToken}
		until := f.at(10 * time.Minute)
		ext := f.extend(until, f.at(time.Minute),
			leaseRef(rescued), wrongToken, leaseRef(finished), unknown, leaseRef(reclaimed))
		checkSet(t, "Lost", []string{rescued.ID, kept.ID, finished.ID, unknown.ID}, ext.Lost)
		checkSlice(t, "CancelRequested", nil, ext.CancelRequested)

		got := f.requireState(rescued.ID, ebbtype.StateRunning)
		check(t, "LeaseToken of reclaimed", reclaimed.LeaseToken, got.LeaseToken)
		checkTime(t, "LeaseExpiresAt of reclaimed", until, got.LeaseExpiresAt)
		checkTime(t, "LeaseExpiresAt with wrong token", kept.LeaseExpiresAt, f.get(kept.ID).LeaseExpiresAt)
		f.requireState(finished.ID, ebbtype.StateSucceeded)
	})
}
