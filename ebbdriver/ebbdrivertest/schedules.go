package ebbdrivertest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// schedules is the driver's schedule store. Beat runs on every ebb server,
// so a driver without one fails the suite rather than skipping it.
func (f *fixture) schedules() ebbdriver.Schedules {
	f.t.Helper()
	s, ok := f.d.(ebbdriver.Schedules)
	if !ok {
		f.t.Fatalf("driver %T does not implement ebbdriver.Schedules", f.d)
	}
	return s
}

// cronSchedule is a fully populated cron schedule as an API call would hand
// it to ScheduleUpsert, created and updated at now.
func cronSchedule(name string, now time.Time) *ebbtype.Schedule {
	return &ebbtype.Schedule{
		Name: name, Cron: "30 2 * * 1-5", TZ: "Europe/Berlin", CatchUp: "once",
		Kind: "report.nightly", Args: []byte(`{"format":"pdf","to":["ops@example.com"],"note":"“weekly” ✓"}`),
		Queue: "reports", Priority: ebbtype.PriorityLow, MaxAttempts: 5, Timeout: 90 * time.Second,
		Headers:   map[string]string{"team": "ops", "trace": "a/b c"},
		CreatedAt: now, UpdatedAt: now,
	}
}

func (f *fixture) upsertSchedule(s *ebbtype.Schedule) {
	f.t.Helper()
	if err := f.schedules().ScheduleUpsert(f.ctx, s); err != nil {
		f.t.Fatalf("ScheduleUpsert(%s): %v", s.Name, err)
	}
}

func (f *fixture) schedule(name string) *ebbtype.Schedule {
	f.t.Helper()
	s, err := f.schedules().ScheduleGet(f.ctx, name)
	if err != nil {
		f.t.Fatalf("ScheduleGet(%s): %v", name, err)
	}
	if s == nil {
		f.t.Fatalf("ScheduleGet(%s) returned nil without error", name)
	}
	return s
}

func (f *fixture) scheduleList() []ebbtype.Schedule {
	f.t.Helper()
	l, err := f.schedules().ScheduleList(f.ctx)
	if err != nil {
		f.t.Fatalf("ScheduleList: %v", err)
	}
	return l
}

func (f *fixture) requireScheduleNotFound(name string) {
	f.t.Helper()
	s, err := f.schedules().ScheduleGet(f.ctx, name)
	if !errors.Is(err, ebbtype.ErrScheduleNotFound) {
		f.t.Fatalf("ScheduleGet(%s) = %+v, %v; want ErrScheduleNotFound", name, s, err)
	}
}

func (f *fixture) setPaused(name string, paused bool) {
	f.t.Helper()
	if err := f.schedules().ScheduleSetPaused(f.ctx, name, paused); err != nil {
		f.t.Fatalf("ScheduleSetPaused(%s, %t): %v", name, paused, err)
	}
}

// markFired runs ScheduleMarkFired and fails unless it reports want.
func (f *fixture) markFired(name string, tick time.Time, taskID string, want bool) {
	f.t.Helper()
	got, err := f.schedules().ScheduleMarkFired(f.ctx, name, tick, taskID, tick.Add(time.Second))
	if err != nil {
		f.t.Fatalf("ScheduleMarkFired(%s, %s, %s): %v", name, fmtTime(tick), taskID, err)
	}
	if got != want {
		f.t.Errorf("ScheduleMarkFired(%s, %s, %s) = %t, want %t", name, fmtTime(tick), taskID, got, want)
	}
}

func scheduleNames(l []ebbtype.Schedule) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = s.Name
	}
	return out
}

// firedNightly sets up a fixture holding schedule "nightly" (cronSchedule at
// the base time) marked fired as "task-1" a minute later, and returns it with
// that schedule and tick.
func firedNightly(t *testing.T, newDriver Factory) (*fixture, *ebbtype.Schedule, time.Time) {
	t.Helper()
	f := setup(t, newDriver)
	s := cronSchedule("nightly", f.now)
	f.upsertSchedule(s)
	tick := f.at(time.Minute)
	f.markFired("nightly", tick, "task-1", true)
	return f, s, tick
}

// fired is s with the firing state a MarkFired of tick as taskID leaves.
func fired(s *ebbtype.Schedule, tick time.Time, taskID string) *ebbtype.Schedule {
	c := *s
	c.LastTickAt, c.LastTaskID = tick, taskID
	return &c
}

func checkSchedule(t *testing.T, what string, want, got *ebbtype.Schedule) {
	t.Helper()
	p := what + ": schedule " + want.Name + " "
	check(t, p+"Name", want.Name, got.Name)
	check(t, p+"Cron", want.Cron, got.Cron)
	check(t, p+"Every", want.Every, got.Every)
	checkTime(t, p+"At", want.At, got.At)
	check(t, p+"TZ", want.TZ, got.TZ)
	check(t, p+"CatchUp", want.CatchUp, got.CatchUp)
	check(t, p+"Kind", want.Kind, got.Kind)
	checkJSON(t, p+"Args", want.Args, got.Args)
	check(t, p+"Queue", want.Queue, got.Queue)
	check(t, p+"Priority", want.Priority, got.Priority)
	check(t, p+"MaxAttempts", want.MaxAttempts, got.MaxAttempts)
	check(t, p+"Timeout", want.Timeout, got.Timeout)
	checkMap(t, p+"Headers", want.Headers, got.Headers)
	check(t, p+"Paused", want.Paused, got.Paused)
	checkTime(t, p+"LastTickAt", want.LastTickAt, got.LastTickAt)
	check(t, p+"LastTaskID", want.LastTaskID, got.LastTaskID)
	checkTime(t, p+"CreatedAt", want.CreatedAt, got.CreatedAt)
	checkTime(t, p+"UpdatedAt", want.UpdatedAt, got.UpdatedAt)
}

func testSchedules(t *testing.T, newDriver Factory) {
	t.Run("Delete", func(t *testing.T) {
		f := setup(t, newDriver)
		s := cronSchedule("nightly", f.now)
		f.upsertSchedule(s)
		f.upsertSchedule(cronSchedule("other", f.now))
		f.markFired("nightly", f.at(time.Minute), "task-1", true)
		f.setPaused("nightly", true)

		if err := f.schedules().ScheduleDelete(f.ctx, "nightly"); err != nil {
			t.Fatalf("ScheduleDelete: %v", err)
		}
		f.requireScheduleNotFound("nightly")
		checkErrIs(t, "ScheduleDelete again", f.schedules().ScheduleDelete(f.ctx, "nightly"), ebbtype.ErrScheduleNotFound)
		checkErrIs(t, "ScheduleDelete of a name never stored", f.schedules().ScheduleDelete(f.ctx, "never"), ebbtype.ErrScheduleNotFound)
		checkSlice(t, "names after the delete", []string{"other"}, scheduleNames(f.scheduleList()))

		// The firing state went with the definition: a new schedule of the
		// same name starts afresh, or it would skip its first ticks.
		again := cronSchedule("nightly", f.at(time.Hour))
		f.upsertSchedule(again)
		checkSchedule(t, "recreated", again, f.schedule("nightly"))
	})

	t.Run("List", func(t *testing.T) {
		f := setup(t, newDriver)
		if l := f.scheduleList(); len(l) != 0 {
			t.Fatalf("ScheduleList of an empty broker = %v, want none", scheduleNames(l))
		}
		// Byte order: digits, then upper case, then lower case; '-' before '.'.
		names := []string{"nightly", "a.b", "B", "a", "z9", "a-b", "10"}
		want := map[string]*ebbtype.Schedule{}
		for i, name := range names {
			s := cronSchedule(name, f.at(time.Duration(i)*time.Second))
			s.Kind = "kind." + name
			f.upsertSchedule(s)
			want[name] = s
		}
		f.setPaused("a", true)
		want["a"].Paused = true
		f.markFired("z9", f.at(time.Minute), "task-z9", true)
		want["z9"] = fired(want["z9"], f.at(time.Minute), "task-z9")

		l := f.scheduleList()
		checkSlice(t, "names", []string{"10", "B", "a", "a-b", "a.b", "nightly", "z9"}, scheduleNames(l))
		for i := range l {
			if w := want[l[i].Name]; w != nil {
				checkSchedule(t, "listed", w, &l[i])
			}
		}
	})

	t.Run("MarkFired", func(t *testing.T) {
		f := setup(t, newDriver)
		s := cronSchedule("nightly", f.now)
		f.upsertSchedule(s)
		t1, t2 := f.at(time.Minute), f.at(2*time.Minute)
		f.markFired("nightly", t1, "task-1", true)
		checkSchedule(t, "after the first tick", fired(s, t1, "task-1"), f.schedule("nightly"))
		f.markFired("nightly", t2, "task-2", true)
		checkSchedule(t, "after the second tick", fired(s, t2, "task-2"), f.schedule("nightly"))

		// Each schedule has its own firing state.
		other := cronSchedule("other", f.now)
		f.upsertSchedule(other)
		f.markFired("other", t1, "task-o", true)
		checkSchedule(t, "the other schedule", fired(other, t1, "task-o"), f.schedule("other"))
		checkSchedule(t, "after the other schedule fired", fired(s, t2, "task-2"), f.schedule("nightly"))

		// Ticks compare as times, not as text: 2001-09-09 is where Unix
		// nanoseconds gain a digit.
		early := &ebbtype.Schedule{Name: "early", Every: time.Second, Kind: "k", Queue: "q", CreatedAt: f.now, UpdatedAt: f.now}
		f.upsertSchedule(early)
		before, after := time.Unix(999_999_999, 0), time.Unix(1_000_000_001, 0)
		f.markFired("early", before, "task-before", true)
		f.markFired("early", after, "task-after", true)
		f.markFired("early", before, "task-before", false)
		checkSchedule(t, "across the digit rollover", fired(early, after, "task-after"), f.schedule("early"))

		ok, err := f.schedules().ScheduleMarkFired(f.ctx, "never", t1, "task-x", t1)
		checkErrIs(t, "ScheduleMarkFired of an unknown schedule", err, ebbtype.ErrScheduleNotFound)
		check(t, "ScheduleMarkFired of an unknown schedule", false, ok)
		f.requireScheduleNotFound("never")
	})

	t.Run("MarkFiredConcurrent", func(t *testing.T) {
		f := setup(t, newDriver)
		s := cronSchedule("nightly", f.now)
		f.upsertSchedule(s)
		c := f.schedules()
		const n = 8
		race := func(tick func(i int) time.Time) []bool {
			t.Helper()
			var (
				wg   sync.WaitGroup
				ok   = make([]bool, n)
				errs = make([]error, n)
			)
			for i := range n {
				wg.Go(func() {
					ok[i], errs[i] = c.ScheduleMarkFired(f.ctx, "nightly", tick(i), fmt.Sprintf("task-%d", i), f.at(time.Hour))
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("ScheduleMarkFired by replica %d: %v", i, err)
				}
			}
			return ok
		}

		// Replicas firing the same tick: one records it.
		tick := f.at(time.Minute)
		ok := race(func(int) time.Time { return tick })
		var winners []int
		for i := range n {
			if ok[i] {
				winners = append(winners, i)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("%d replicas marking the same tick: %v recorded it, want exactly one", n, winners)
		}
		checkSchedule(t, "after the race", fired(s, tick, fmt.Sprintf("task-%d", winners[0])), f.schedule("nightly"))

		// Replicas firing different ticks: whatever the order, the latest
		// tick ends up stored, and its mark cannot have been refused.
		ok = race(func(i int) time.Time { return tick.Add(time.Duration(i+1) * time.Second) })
		if !ok[n-1] {
			t.Errorf("the mark of the latest tick was refused")
		}
		checkSchedule(t, "after racing different ticks", fired(s, tick.Add(n*time.Second), fmt.Sprintf("task-%d", n-1)), f.schedule("nightly"))
	})

	t.Run("MarkFiredStale", func(t *testing.T) {
		f, s, tick := firedNightly(t, newDriver)
		want := fired(s, tick, "task-1")

		// A leader that missed the last mark, or one the election replaced,
		// must not move the state back: catch-up would fire old ticks again.
		f.markFired("nightly", tick, "task-1", false)
		f.markFired("nightly", tick, "task-other", false)
		f.markFired("nightly", tick.Add(-time.Millisecond), "task-0", false)
		f.markFired("nightly", f.now, "task-00", false)
		checkSchedule(t, "after stale marks", want, f.schedule("nightly"))

		// A zero tick is not later than "never fired" either.
		fresh := cronSchedule("fresh", f.now)
		f.upsertSchedule(fresh)
		f.markFired("fresh", time.Time{}, "task-z", false)
		checkSchedule(t, "after a zero tick", fresh, f.schedule("fresh"))
	})

	t.Run("Pause", func(t *testing.T) {
		f, s, tick := firedNightly(t, newDriver)
		want := fired(s, tick, "task-1")

		f.setPaused("nightly", true)
		want.Paused = true
		checkSchedule(t, "paused", want, f.schedule("nightly"))
		f.setPaused("nightly", true)
		checkSchedule(t, "paused twice", want, f.schedule("nightly"))

		// The firing state moves on while paused (a leader may have read
		// the schedule just before the pause).
		f.markFired("nightly", f.at(2*time.Minute), "task-2", true)
		want = fired(want, f.at(2*time.Minute), "task-2")

		f.setPaused("nightly", false)
		want.Paused = false
		checkSchedule(t, "resumed", want, f.schedule("nightly"))
		f.setPaused("nightly", false)
		checkSchedule(t, "resumed twice", want, f.schedule("nightly"))

		for _, paused := range []bool{true, false} {
			err := f.schedules().ScheduleSetPaused(f.ctx, "never", paused)
			checkErrIs(t, fmt.Sprintf("ScheduleSetPaused(never, %t)", paused), err, ebbtype.ErrScheduleNotFound)
		}
		f.requireScheduleNotFound("never")
	})

	t.Run("RoundTrip", func(t *testing.T) {
		f := setup(t, newDriver)
		full := cronSchedule("reports:nightly-1", f.at(-36*time.Hour+123*time.Millisecond))
		full.UpdatedAt = f.at(-time.Hour + 456*time.Millisecond)
		every := &ebbtype.Schedule{
			// More significant digits than a float64 printed with 14 keeps.
			Name: "every_odd", Every: 50*time.Hour + 3*time.Millisecond + 7, CatchUp: "skip",
			Kind: "sync", Args: []byte(`{"n":12345678901234567890,"s":"\u00e9\n"}`), Queue: "default",
			Priority: ebbtype.PriorityHigh, MaxAttempts: 1, Timeout: 1500 * time.Microsecond,
			CreatedAt: f.now, UpdatedAt: f.now,
		}
		once := &ebbtype.Schedule{
			Name: "once.launch", At: f.at(72*time.Hour + 789*time.Millisecond), CatchUp: "once",
			Kind: "launch", Args: []byte(`[]`), Queue: "default", Priority: ebbtype.PriorityNormal,
			CreatedAt: f.now, UpdatedAt: f.now,
		}
		bare := &ebbtype.Schedule{
			Name: "bare", Every: time.Second, Kind: "k", Queue: "q",
			CreatedAt: f.now, UpdatedAt: f.now,
		}
		all := []*ebbtype.Schedule{full, every, once, bare}
		for _, s := range all {
			f.upsertSchedule(s)
		}
		for _, s := range all {
			checkSchedule(t, "ScheduleGet", s, f.schedule(s.Name))
		}
		l := f.scheduleList()
		if len(l) != len(all) {
			t.Fatalf("ScheduleList = %v, want %d schedules", scheduleNames(l), len(all))
		}
		for _, s := range all {
			i := slices.IndexFunc(l, func(r ebbtype.Schedule) bool { return r.Name == s.Name })
			if i < 0 {
				t.Errorf("ScheduleList has no %s: %v", s.Name, scheduleNames(l))
				continue
			}
			checkSchedule(t, "ScheduleList", s, &l[i])
		}
		f.requireScheduleNotFound("never")
		f.requireScheduleNotFound("")

		if err := f.schedules().ScheduleUpsert(f.ctx, &ebbtype.Schedule{Kind: "k", Queue: "q", Every: time.Second}); err == nil {
			t.Errorf("ScheduleUpsert of a schedule without a name: no error")
		}
		checkSlice(t, "names after a refused upsert", []string{"bare", "every_odd", "once.launch", "reports:nightly-1"}, scheduleNames(f.scheduleList()))
	})

	t.Run("UpsertCarriedState", func(t *testing.T) {
		f := setup(t, newDriver)
		t1, t2 := f.at(time.Minute), f.at(2*time.Minute)

		// A new schedule takes the state it carries (an import, say).
		s := cronSchedule("nightly", f.now)
		s.Paused, s.LastTickAt, s.LastTaskID = true, t1, "task-1"
		f.upsertSchedule(s)
		checkSchedule(t, "created with state", s, f.schedule("nightly"))

		// A later tick carried by a replacement is taken; not carrying
		// Paused does not resume.
		r := cronSchedule("nightly", f.at(time.Hour))
		r.Kind = "replaced"
		r.LastTickAt, r.LastTaskID = t2, "task-2"
		f.upsertSchedule(r)
		want := fired(r, t2, "task-2")
		want.CreatedAt, want.Paused = s.CreatedAt, true
		checkSchedule(t, "replaced with a later tick", want, f.schedule("nightly"))

		// An earlier tick is not: the stored tick only moves forward.
		r = cronSchedule("nightly", f.at(2*time.Hour))
		r.LastTickAt, r.LastTaskID = t1, "task-1"
		f.upsertSchedule(r)
		want = fired(r, t2, "task-2")
		want.CreatedAt, want.Paused = s.CreatedAt, true
		checkSchedule(t, "replaced with an earlier tick", want, f.schedule("nightly"))

		// Carrying Paused pauses.
		f.setPaused("nightly", false)
		r = cronSchedule("nightly", f.at(3*time.Hour))
		r.Paused = true
		f.upsertSchedule(r)
		want = fired(r, t2, "task-2")
		want.CreatedAt = s.CreatedAt
		checkSchedule(t, "replaced carrying Paused", want, f.schedule("nightly"))
	})

	t.Run("UpsertReplaces", func(t *testing.T) {
		f, s, tick := firedNightly(t, newDriver)
		f.setPaused("nightly", true)

		// Every definition field changes, and the optional ones are
		// cleared: the new definition replaces the old, it is not merged
		// into it. CreatedAt is the caller's now, as a config reload sends.
		r := &ebbtype.Schedule{
			Name: "nightly", Every: 10 * time.Minute, CatchUp: "skip",
			Kind: "report.v2", Args: []byte(`{"v":2}`), Queue: "reports-v2",
			Priority: ebbtype.PriorityHigh, MaxAttempts: 2, Timeout: time.Minute,
			CreatedAt: f.at(time.Hour), UpdatedAt: f.at(time.Hour),
		}
		f.upsertSchedule(r)
		want := fired(r, tick, "task-1")
		want.Paused, want.CreatedAt = true, s.CreatedAt
		checkSchedule(t, "replaced", want, f.schedule("nightly"))

		// And back to a cron definition, from the Every one.
		r2 := cronSchedule("nightly", f.at(2*time.Hour))
		r2.TZ = ""
		f.upsertSchedule(r2)
		want = fired(r2, tick, "task-1")
		want.Paused, want.CreatedAt = true, s.CreatedAt
		checkSchedule(t, "replaced again", want, f.schedule("nightly"))
		checkSlice(t, "names", []string{"nightly"}, scheduleNames(f.scheduleList()))

		// The replaced definition still takes marks as before.
		f.markFired("nightly", tick, "task-1", false)
		f.markFired("nightly", f.at(2*time.Minute), "task-2", true)
	})
}
