package ebbredis

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// TestScheduleKeys checks the layout in doc.go: a schedule is its hash and
// its entry in the names set, the definition JSON carries no firing state
// (the fields the scripts own would contradict it), and a delete leaves
// nothing behind.
func TestScheduleKeys(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	s := &ebbtype.Schedule{Name: "nightly", Cron: "0 3 * * *", Kind: "k", Queue: "q",
		Paused: true, LastTickAt: now, LastTaskID: "task-0", CreatedAt: now, UpdatedAt: now}
	if err := d.ScheduleUpsert(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ScheduleMarkFired(ctx, "nightly", now.Add(time.Minute), "task-1", now); err != nil {
		t.Fatal(err)
	}
	scan := func() []string {
		t.Helper()
		var keys []string
		iter := d.rdb.Scan(ctx, 0, globEscape(d.prefix+":schedules:")+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if keys := scan(); len(keys) != 2 {
		t.Errorf("keys of one schedule = %q, want the names set and the schedule's hash", keys)
	}
	def, err := d.rdb.HGet(ctx, d.scheduleKey("nightly"), "def").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"last_tick_at", "last_task_id", `"paused":true`, "task-"} {
		if strings.Contains(def, field) {
			t.Errorf("stored definition %s contains %s", def, field)
		}
	}

	if err := d.ScheduleDelete(ctx, "nightly"); err != nil {
		t.Fatal(err)
	}
	if keys := scan(); len(keys) != 0 {
		t.Errorf("keys left after deleting the only schedule: %q", keys)
	}
}

// TestScheduleMalformed: a definition Go cannot decode (written by hand, or
// by a broken ebb) is reported with the schedule's name rather than as
// missing, and can still be deleted.
func TestScheduleMalformed(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	for _, name := range []string{"bad", "good"} {
		if err := d.ScheduleUpsert(ctx, &ebbtype.Schedule{Name: name, Every: time.Minute, Kind: "k", Queue: "q",
			CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.rdb.HSet(ctx, d.scheduleKey("bad"), "def", `{"every_ns":`).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ScheduleGet(ctx, "bad"); err == nil || errors.Is(err, ebbtype.ErrScheduleNotFound) || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("ScheduleGet of a malformed schedule: error = %v, want one naming it", err)
	}
	if l, err := d.ScheduleList(ctx); err != nil || len(l) != 2 || l[0].Name != "bad" || l[0].Malformed == "" ||
		l[1].Name != "good" || l[1].Malformed != "" || l[1].Every != time.Minute {
		t.Errorf("ScheduleList with a malformed schedule = %+v, %v; want bad marked Malformed and good intact", l, err)
	}
	if err := d.ScheduleDelete(ctx, "bad"); err != nil {
		t.Fatalf("ScheduleDelete of a malformed schedule: %v", err)
	}
	if l, err := d.ScheduleList(ctx); err != nil || len(l) != 1 || l[0].Name != "good" {
		t.Errorf("ScheduleList after deleting it = %+v, %v; want good", l, err)
	}
}

// TestScheduleTickOrder checks the scripts' comparison of nanosecond
// strings against integer comparison, where Lua's doubles would round.
func TestScheduleTickOrder(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t)
	s := newScript("-- test: later(ARGV[1], ARGV[2])\n-- ARGV[1] -> a\n-- ARGV[2] -> b\n" + luaNSLater +
		"return later(ARGV[1], ARGV[2]) and 1 or 0\n")
	vals := []int64{0, 1, 9, 10, -1, -9, -10, 999_999_999_000_000_000, 1_000_000_001_000_000_000,
		1_752_000_000_000_000_001, 1_752_000_000_000_000_002, -1_752_000_000_000_000_001, -1_752_000_000_000_000_002}
	for _, a := range vals {
		for _, b := range vals {
			got, err := d.run(t.Context(), s, nil, strconv.FormatInt(a, 10), strconv.FormatInt(b, 10)).Int()
			if err != nil {
				t.Fatal(err)
			}
			if want := a > b; (got == 1) != want {
				t.Errorf("later(%d, %d) = %t, want %t", a, b, got == 1, want)
			}
		}
	}
}
