package ebbdrivertest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// leaderTTL is the TTL of every election in the suite; tests expire it by
// passing a later Now, never by waiting.
const leaderTTL = 15 * time.Second

// control is the driver's control plane. Every driver serves an ebb server,
// so a driver without one fails the suite rather than skipping it.
func (f *fixture) control() ebbdriver.Control {
	f.t.Helper()
	c, ok := f.d.(ebbdriver.Control)
	if !ok {
		f.t.Fatalf("driver %T does not implement ebbdriver.Control", f.d)
	}
	return c
}

// attempt runs LeaderAttempt for candidate id with leaderTTL.
func (f *fixture) attempt(name, id string, now time.Time) *ebbtype.Leadership {
	f.t.Helper()
	l, err := f.control().LeaderAttempt(f.ctx, ebbdriver.LeaderParams{Name: name, ID: id, TTL: leaderTTL, Now: now})
	if err != nil {
		f.t.Fatalf("LeaderAttempt(%s, %s) at %s: %v", name, id, fmtTime(now), err)
	}
	if l == nil {
		f.t.Fatalf("LeaderAttempt(%s, %s) returned nil without error", name, id)
	}
	return l
}

// elect runs LeaderAttempt and fails unless id leads afterwards.
func (f *fixture) elect(name, id string, now time.Time) *ebbtype.Leadership {
	f.t.Helper()
	l := f.attempt(name, id, now)
	if l.LeaderID != id {
		f.t.Fatalf("LeaderAttempt(%s, %s) at %s: leader is %q (term %d, until %s), want %s",
			name, id, fmtTime(now), l.LeaderID, l.Term, fmtTime(l.ExpiresAt), id)
	}
	return l
}

// checkLeader compares an answer with the leadership expected.
func checkLeader(t *testing.T, what string, want ebbtype.Leadership, got *ebbtype.Leadership) {
	t.Helper()
	check(t, what+" LeaderID", want.LeaderID, got.LeaderID)
	check(t, what+" Term", want.Term, got.Term)
	checkTime(t, what+" ExpiresAt", want.ExpiresAt, got.ExpiresAt)
}

// leaderAt runs LeaderGet.
func (f *fixture) leaderAt(name string, now time.Time) *ebbtype.Leadership {
	f.t.Helper()
	l, err := f.control().LeaderGet(f.ctx, name, now)
	if err != nil {
		f.t.Fatalf("LeaderGet(%s) at %s: %v", name, fmtTime(now), err)
	}
	return l
}

// noLeader fails unless LeaderGet says nobody leads name at now.
func (f *fixture) noLeader(what, name string, now time.Time) {
	f.t.Helper()
	if l := f.leaderAt(name, now); l != nil {
		f.t.Errorf("LeaderGet(%s) %s = %s (term %d, until %s), want nil: nobody leads",
			name, what, l.LeaderID, l.Term, fmtTime(l.ExpiresAt))
	}
}

// isLeader fails unless LeaderGet reports want at now.
func (f *fixture) isLeader(what, name string, now time.Time, want *ebbtype.Leadership) {
	f.t.Helper()
	got := f.leaderAt(name, now)
	if got == nil {
		f.t.Errorf("LeaderGet(%s) %s = nil, want %s (term %d)", name, what, want.LeaderID, want.Term)
		return
	}
	checkLeader(f.t, "LeaderGet "+what, *want, got)
}

func (f *fixture) resign(name, id string) {
	f.t.Helper()
	if err := f.control().LeaderResign(f.ctx, name, id); err != nil {
		f.t.Fatalf("LeaderResign(%s, %s): %v", name, id, err)
	}
}

// decision is a scale-up decision of pool by leader l, made at at.
func decision(pool string, l *ebbtype.Leadership, at time.Time, from, to int) *ebbtype.Decision {
	return &ebbtype.Decision{
		Pool: pool, At: at, Term: l.Term, LeaderID: l.LeaderID,
		From: from, To: to, Action: "up", Reason: fmt.Sprintf("%s: %d → %d", pool, from, to),
		Inputs: []byte(fmt.Sprintf(`{"queued":%d}`, to*10)),
	}
}

// appendOK stores d and fails unless it was accepted with a Seq.
func (f *fixture) appendOK(name string, d *ebbtype.Decision) {
	f.t.Helper()
	if err := f.control().DecisionAppend(f.ctx, name, d); err != nil {
		f.t.Fatalf("DecisionAppend(%s, pool %s, %s term %d): %v", name, d.Pool, d.LeaderID, d.Term, err)
	}
	if d.Seq <= 0 {
		f.t.Fatalf("DecisionAppend(%s, pool %s) left Seq = %d, want it assigned", name, d.Pool, d.Seq)
	}
}

// appendFenced fails unless DecisionAppend refuses d with ErrNotLeader.
func (f *fixture) appendFenced(what, name string, d *ebbtype.Decision) {
	f.t.Helper()
	err := f.control().DecisionAppend(f.ctx, name, d)
	if !errors.Is(err, ebbdriver.ErrNotLeader) {
		f.t.Errorf("DecisionAppend %s: error = %v, want ErrNotLeader", what, err)
	}
}

func (f *fixture) decisions(pool string, limit int) []ebbtype.Decision {
	f.t.Helper()
	ds, err := f.control().DecisionList(f.ctx, pool, limit)
	if err != nil {
		f.t.Fatalf("DecisionList(%q, %d): %v", pool, limit, err)
	}
	return ds
}

func seqs(ds []ebbtype.Decision) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.Seq
	}
	return out
}

// decisionSeqs are the Seqs of ds, newest first, as DecisionList returns them.
func decisionSeqs(ds ...*ebbtype.Decision) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[len(ds)-1-i] = d.Seq
	}
	return out
}

func checkDecision(t *testing.T, want *ebbtype.Decision, got ebbtype.Decision) {
	t.Helper()
	p := fmt.Sprintf("decision %d ", want.Seq)
	check(t, p+"Seq", want.Seq, got.Seq)
	check(t, p+"Pool", want.Pool, got.Pool)
	checkTime(t, p+"At", want.At, got.At)
	check(t, p+"Term", want.Term, got.Term)
	check(t, p+"LeaderID", want.LeaderID, got.LeaderID)
	check(t, p+"From", want.From, got.From)
	check(t, p+"To", want.To, got.To)
	check(t, p+"Action", want.Action, got.Action)
	check(t, p+"Reason", want.Reason, got.Reason)
	checkJSON(t, p+"Inputs", want.Inputs, got.Inputs)
	checkSlice(t, p+"Drained", want.Drained, got.Drained)
}

func testControl(t *testing.T, newDriver Factory) {
	t.Run("DecisionAppend", func(t *testing.T) {
		f := setup(t, newDriver)
		l := f.elect("cp", "a", f.now)
		d1 := decision("web", l, f.now, 1, 2)
		f.appendOK("cp", d1)
		d2 := decision("web", l, f.at(time.Second), 2, 3)
		f.appendOK("cp", d2)
		d3 := decision("batch", l, f.at(2*time.Second), 0, 1)
		f.appendOK("cp", d3)
		if d2.Seq <= d1.Seq || d3.Seq <= d2.Seq {
			t.Errorf("Seqs %d, %d, %d do not increase", d1.Seq, d2.Seq, d3.Seq)
		}
		ds := f.decisions("", 10)
		checkSlice(t, "Seqs", decisionSeqs(d1, d2, d3), seqs(ds))
		if len(ds) == 3 {
			checkDecision(t, d1, ds[2])
		}
	})

	t.Run("DecisionAppendFenced", func(t *testing.T) {
		f := setup(t, newDriver)
		stored := func() []int64 { return seqs(f.decisions("", 0)) }

		l1 := f.elect("cp", "a", f.now)
		kept := decision("web", l1, f.now, 1, 2)
		f.appendOK("cp", kept)
		want := []int64{kept.Seq}

		other := *l1
		other.LeaderID = "b"
		f.appendFenced("by a non-leader", "cp", decision("web", &other, f.now, 2, 3))
		future := *l1
		future.Term++
		f.appendFenced("with a term not yet elected", "cp", decision("web", &future, f.now, 2, 3))
		f.appendFenced("for another election", "other", decision("web", l1, f.now, 2, 3))
		f.appendFenced("at the expiry", "cp", decision("web", l1, l1.ExpiresAt, 2, 3))
		f.appendFenced("after the expiry", "cp", decision("web", l1, l1.ExpiresAt.Add(time.Second), 2, 3))

		// a loses the leadership to b, wins it back: its first term is stale.
		l2 := f.elect("cp", "b", l1.ExpiresAt)
		f.appendFenced("by the expired leader", "cp", decision("web", l1, l1.ExpiresAt, 2, 3))
		l3 := f.elect("cp", "a", l2.ExpiresAt)
		f.appendFenced("with a stale term", "cp", decision("web", l1, l2.ExpiresAt, 2, 3))
		f.appendFenced("with the successor's term", "cp", decision("web", l2, l2.ExpiresAt, 2, 3))
		checkSlice(t, "stored after refusals", want, stored())

		d := decision("web", l3, l2.ExpiresAt, 1, 3)
		f.appendOK("cp", d)
		want = append([]int64{d.Seq}, want...)

		f.resign("cp", "a")
		f.appendFenced("after resigning", "cp", decision("web", l3, l2.ExpiresAt, 3, 4))
		checkSlice(t, "stored at the end", want, stored())
	})

	t.Run("DecisionList", func(t *testing.T) {
		f := setup(t, newDriver)
		if ds := f.decisions("", 10); len(ds) != 0 {
			t.Fatalf("DecisionList of an empty broker = %+v, want none", ds)
		}
		l := f.elect("cp", "a", f.now)
		var web, batch []*ebbtype.Decision
		for i := range 6 {
			d := decision("web", l, f.at(time.Duration(i)*time.Second), i, i+1)
			if i%3 == 2 {
				d.Pool = "batch"
				batch = append(batch, d)
			} else {
				web = append(web, d)
			}
			f.appendOK("cp", d)
		}
		all := []*ebbtype.Decision{web[0], web[1], batch[0], web[2], web[3], batch[1]}
		checkSlice(t, "all, newest first", decisionSeqs(all...), seqs(f.decisions("", 100)))
		checkSlice(t, "all, limit 4", decisionSeqs(all...)[:4], seqs(f.decisions("", 4)))
		checkSlice(t, "all, no limit", decisionSeqs(all...), seqs(f.decisions("", 0)))
		checkSlice(t, "web", decisionSeqs(web...), seqs(f.decisions("web", 100)))
		checkSlice(t, "web, limit 1", decisionSeqs(web...)[:1], seqs(f.decisions("web", 1)))
		checkSlice(t, "batch", decisionSeqs(batch...), seqs(f.decisions("batch", 100)))
		checkSlice(t, "unknown pool", nil, seqs(f.decisions("none", 100)))
	})

	t.Run("DecisionLogMax", func(t *testing.T) {
		f := setup(t, newDriver)
		l := f.elect("cp", "a", f.now)
		batch := f.at(time.Second)
		batch0 := decision("batch", l, batch, 0, 1)
		f.appendOK("cp", batch0)

		var web []*ebbtype.Decision
		grow := func(to int) {
			t.Helper()
			for i := len(web); i < to; i++ {
				d := decision("web", l, f.at(time.Duration(i)*time.Millisecond), i, i+1)
				f.appendOK("cp", d)
				web = append(web, d)
			}
			ds := f.decisions("web", 0)
			kept := web[max(0, len(web)-ebbdriver.DecisionLogMax):]
			if len(ds) != len(kept) {
				t.Fatalf("after %d decisions: %d kept, want %d", len(web), len(ds), len(kept))
			}
			checkSlice(t, fmt.Sprintf("after %d decisions: newest", len(web)), decisionSeqs(kept[len(kept)-3:]...), seqs(ds[:3]))
			checkSlice(t, fmt.Sprintf("after %d decisions: oldest", len(web)), decisionSeqs(kept[:3]...), seqs(ds[len(ds)-3:]))
		}
		grow(ebbdriver.DecisionLogMax - 2)
		grow(ebbdriver.DecisionLogMax)
		grow(ebbdriver.DecisionLogMax + 1)
		grow(ebbdriver.DecisionLogMax + 5)

		// The cap is per pool: web's appends did not push out batch's.
		batch1 := decision("batch", l, batch, 1, 2)
		f.appendOK("cp", batch1)
		checkSlice(t, "batch", decisionSeqs(batch0, batch1), seqs(f.decisions("batch", 0)))
		check(t, "all decisions", ebbdriver.DecisionLogMax+2, len(f.decisions("", 0)))
	})

	t.Run("DecisionRoundTrip", func(t *testing.T) {
		f := setup(t, newDriver)
		l := f.elect("cp", "leader-7f3a", f.now)
		full := &ebbtype.Decision{
			Pool: "web", At: f.at(1234 * time.Millisecond), Term: l.Term, LeaderID: l.LeaderID,
			From: 4, To: 1, Action: "down", Reason: "web: idle for 5m0s — “queue” empty",
			Inputs:  []byte(`{"queued":0,"in_flight":0,"rate":{"enqueued":0.25,"completed":1.5},"workers":["w1","w2"]}`),
			Drained: []string{"w-3", "w-2", "w-1"},
		}
		bare := &ebbtype.Decision{
			Pool: "batch", At: f.at(2 * time.Second), Term: l.Term, LeaderID: l.LeaderID,
			From: 0, To: 1, Action: "up", Reason: "batch: backlog",
		}
		f.appendOK("cp", full)
		f.appendOK("cp", bare)
		ds := f.decisions("", 10)
		if len(ds) != 2 {
			t.Fatalf("DecisionList = %d decisions, want 2", len(ds))
		}
		checkDecision(t, full, ds[1])
		checkDecision(t, bare, ds[0])
		if len(ds[0].Drained) != 0 {
			t.Errorf("Drained of a decision without drains = %q, want empty", ds[0].Drained)
		}
	})

	t.Run("LeaderConcurrent", func(t *testing.T) {
		f := setup(t, newDriver)
		const n = 8
		c := f.control()
		race := func(now time.Time) *ebbtype.Leadership {
			t.Helper()
			var (
				wg   sync.WaitGroup
				got  = make([]*ebbtype.Leadership, n)
				errs = make([]error, n)
			)
			for i := range n {
				wg.Go(func() {
					got[i], errs[i] = c.LeaderAttempt(f.ctx, ebbdriver.LeaderParams{
						Name: "cp", ID: fmt.Sprintf("c%d", i), TTL: leaderTTL, Now: now,
					})
				})
			}
			wg.Wait()
			var winners []string
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("LeaderAttempt(c%d): %v", i, errs[i])
				}
				if got[i].LeaderID == fmt.Sprintf("c%d", i) {
					winners = append(winners, got[i].LeaderID)
				}
			}
			if len(winners) != 1 {
				t.Fatalf("%d candidates racing at %s: leaders %v, want exactly one", n, fmtTime(now), winners)
			}
			for i := range n {
				checkLeader(t, fmt.Sprintf("c%d's answer", i), *got[0], got[i])
			}
			return got[0]
		}
		first := race(f.now)
		checkTime(t, "first ExpiresAt", f.now.Add(leaderTTL), first.ExpiresAt)
		// The same race after the expiry: one takeover, one new term.
		second := race(first.ExpiresAt)
		if second.Term <= first.Term {
			t.Errorf("term after the takeover race = %d, want above %d", second.Term, first.Term)
		}
		checkLeader(t, "a later attempt's answer", *second, f.attempt("cp", "late", first.ExpiresAt.Add(time.Second)))
	})

	t.Run("LeaderElect", func(t *testing.T) {
		f := setup(t, newDriver)
		l := f.elect("cp", "a", f.now)
		if l.Term <= 0 {
			t.Errorf("first Term = %d, want positive", l.Term)
		}
		checkTime(t, "ExpiresAt", f.now.Add(leaderTTL), l.ExpiresAt)

		// Elections of different names are independent.
		other := f.elect("other", "b", f.now)
		if other.Term <= 0 {
			t.Errorf("Term of another election = %d, want positive", other.Term)
		}
		checkLeader(t, "cp after the other election", *l, f.attempt("cp", "b", f.at(time.Second)))
	})

	t.Run("LeaderExpiry", func(t *testing.T) {
		f := setup(t, newDriver)
		a := f.elect("cp", "a", f.now)
		// Leadership covers [election, ExpiresAt): at ExpiresAt it is over.
		checkLeader(t, "just before the expiry", *a, f.attempt("cp", "b", a.ExpiresAt.Add(-time.Millisecond)))
		b := f.elect("cp", "b", a.ExpiresAt)
		if b.Term <= a.Term {
			t.Errorf("successor's Term = %d, want above %d", b.Term, a.Term)
		}
		checkTime(t, "successor's ExpiresAt", a.ExpiresAt.Add(leaderTTL), b.ExpiresAt)
		// The old leader, renewing late, learns it lost.
		checkLeader(t, "old leader's late renewal", *b, f.attempt("cp", "a", a.ExpiresAt.Add(time.Second)))
	})

	t.Run("LeaderRenew", func(t *testing.T) {
		f := setup(t, newDriver)
		a := f.elect("cp", "a", f.now)
		renewed := f.elect("cp", "a", f.at(5*time.Second))
		check(t, "Term after renewal", a.Term, renewed.Term)
		checkTime(t, "ExpiresAt after renewal", f.at(5*time.Second+leaderTTL), renewed.ExpiresAt)

		// Another candidate within the renewed TTL (past the first one) sees
		// the leader and changes nothing.
		checkLeader(t, "other candidate's answer", *renewed, f.attempt("cp", "b", a.ExpiresAt.Add(time.Second)))
		checkLeader(t, "second candidate's answer", *renewed, f.attempt("cp", "c", a.ExpiresAt.Add(2*time.Second)))
		again := f.elect("cp", "a", a.ExpiresAt.Add(3*time.Second))
		check(t, "Term after the candidates", a.Term, again.Term)
		checkTime(t, "ExpiresAt after the candidates", a.ExpiresAt.Add(3*time.Second+leaderTTL), again.ExpiresAt)
	})

	t.Run("LeaderResign", func(t *testing.T) {
		f := setup(t, newDriver)
		f.resign("cp", "a") // nobody leads: nothing to give up

		a := f.elect("cp", "a", f.now)
		f.resign("cp", "b") // not the leader: changes nothing
		checkLeader(t, "after a non-leader resigned", *a, f.attempt("cp", "b", f.at(time.Second)))

		// Resigning one election leaves the others alone.
		other := f.elect("other", "a", f.now)
		f.resign("cp", "a")
		checkLeader(t, "another election after resigning cp", *other, f.attempt("other", "b", f.at(2*time.Second)))
		b := f.elect("cp", "b", f.at(2*time.Second)) // at once, not after the TTL
		if b.Term <= a.Term {
			t.Errorf("successor's Term = %d, want above %d", b.Term, a.Term)
		}
		checkTime(t, "successor's ExpiresAt", f.at(2*time.Second+leaderTTL), b.ExpiresAt)

		// The resigned leader cannot take its old term back.
		f.resign("cp", "b")
		again := f.elect("cp", "b", f.at(3*time.Second))
		if again.Term <= b.Term {
			t.Errorf("Term after resigning and standing again = %d, want above %d", again.Term, b.Term)
		}
	})

	t.Run("LeaderGet", func(t *testing.T) {
		f := setup(t, newDriver)
		f.noLeader("before any election", "cp", f.now)

		a := f.elect("cp", "a", f.now)
		f.isLeader("after the election", "cp", f.at(time.Second), a)
		f.noLeader("of another election", "other", f.at(time.Second))
		// The same lease test as LeaderAttempt: held until just before
		// ExpiresAt, over at it.
		f.isLeader("just before the expiry", "cp", a.ExpiresAt.Add(-time.Millisecond), a)
		f.noLeader("at the expiry", "cp", a.ExpiresAt)
		f.noLeader("long after the expiry", "cp", a.ExpiresAt.Add(time.Hour))
		// Reading changed nothing: the lease still holds for a renewal.
		checkLeader(t, "renewal after reads", ebbtype.Leadership{LeaderID: "a", Term: a.Term, ExpiresAt: f.at(time.Second + leaderTTL)},
			f.attempt("cp", "a", f.at(time.Second)))

		b := f.elect("cp", "b", f.at(time.Second+leaderTTL))
		f.isLeader("after a takeover", "cp", f.at(2*time.Second+leaderTTL), b)
		f.resign("cp", "b")
		f.noLeader("after resigning", "cp", f.at(2*time.Second+leaderTTL))
	})

	t.Run("LeaderTermsNeverRepeat", func(t *testing.T) {
		f := setup(t, newDriver)
		seen := map[int64]string{}
		var last int64
		now := f.now
		for i, id := range []string{"a", "b", "a", "a", "c", "a"} {
			l := f.elect("cp", id, now)
			if l.Term <= last {
				t.Errorf("election %d (%s): Term = %d, want above %d", i, id, l.Term, last)
			}
			if prev, ok := seen[l.Term]; ok {
				t.Errorf("election %d (%s): Term %d repeats %s's", i, id, l.Term, prev)
			}
			seen[l.Term], last = id, l.Term
			// Far past the expiry: a broker with native expiry has long
			// forgotten the leader, but not the term.
			now = l.ExpiresAt.Add(time.Duration(i+1) * time.Hour)
		}
	})
}
