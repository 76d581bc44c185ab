package ebbsqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/tid"
)

// TestMigrateFromVersion1 opens a file written by the first schema: it must
// upgrade in place, keep its tasks and totals, backfill Enqueued, and serve
// the control plane and beat's schedules.
func TestMigrateFromVersion1(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	path, raw := openRaw(t)
	if _, err := raw.Exec(migrations[0]); err != nil {
		t.Fatalf("creating a version 1 schema: %v", err)
	}
	if _, err := raw.Exec(`PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO queues (name, succeeded, failed, retried) VALUES ('a', 7, 2, 3), ('idle', 1, 0, 0)`); err != nil {
		t.Fatal(err)
	}
	ins := func(queue, state string, runAt time.Time) {
		t.Helper()
		if _, err := raw.Exec(`INSERT INTO tasks (id, queue, kind, priority, run_at, attempt, max_attempts,
			timeout, retention, unique_ttl, state, enqueued_at) VALUES (?1, ?2, 'k', 2, ?3, 0, 3, 0, 0, 0, ?4, ?5)`,
			tid.NewAt(now), queue, runAt.UnixNano(), state, now.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	ins("a", "queued", now)
	ins("a", "scheduled", now.Add(time.Minute))
	ins("a", "succeeded", now)
	d := openMigrated(t, raw, path, 1)

	stats := func(when string, enqueued, queued int64) {
		t.Helper()
		st, err := d.QueueStats(ctx, now)
		if err != nil {
			t.Fatalf("%s: QueueStats: %v", when, err)
		}
		if len(st) != 2 {
			t.Fatalf("%s: QueueStats = %+v, want queues a and idle", when, st)
		}
		a, idle := st[0], st[1]
		if a.Enqueued != enqueued || a.Succeeded != 7 || a.Failed != 2 || a.Retried != 3 || a.Queued != queued || a.Scheduled != 1 ||
			!a.NextDueAt.Equal(now.Add(time.Minute)) {
			t.Errorf("%s: queue a = %+v, want Enqueued %d, Queued %d, the version 1 totals and tasks", when, a, enqueued, queued)
		}
		if idle.Enqueued != 0 || idle.Succeeded != 1 {
			t.Errorf("%s: queue idle = %+v, want Enqueued 0, Succeeded 1", when, idle)
		}
	}
	stats("after the upgrade", 3, 1)

	tk := &ebbtype.TaskInfo{ID: tid.NewAt(now), Kind: "k", Queue: "a", Priority: ebbtype.PriorityNormal,
		RunAt: now, MaxAttempts: 1, EnqueuedAt: now}
	if _, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{tk}); err != nil {
		t.Fatal(err)
	}
	l, err := d.LeaderAttempt(ctx, ebbdriver.LeaderParams{Name: "cp", ID: "s1", TTL: time.Minute, Now: now})
	if err != nil || l.LeaderID != "s1" {
		t.Fatalf("LeaderAttempt = %+v, %v", l, err)
	}
	dec := &ebbtype.Decision{Pool: "web", At: now, Term: l.Term, LeaderID: "s1", From: 0, To: 1, Action: "up", Reason: "backlog"}
	if err := d.DecisionAppend(ctx, "cp", dec); err != nil {
		t.Fatalf("DecisionAppend: %v", err)
	}
	sched := upsertTestSchedule(t, d, now)

	// Reopening does not migrate again: the backfill would reset Enqueued.
	d = reopen(t, d, path)
	stats("after reopening", 4, 2)
	ds, err := d.DecisionList(ctx, "", 10)
	if err != nil || len(ds) != 1 || ds[0].Seq != dec.Seq {
		t.Errorf("DecisionList after reopening = %+v, %v; want decision %d", ds, err, dec.Seq)
	}
	if l2, err := d.LeaderAttempt(ctx, ebbdriver.LeaderParams{Name: "cp", ID: "s2", TTL: time.Minute, Now: now.Add(time.Second)}); err != nil ||
		l2.LeaderID != "s1" || l2.Term != l.Term {
		t.Errorf("LeaderAttempt after reopening = %+v, %v; want s1 still leading in term %d", l2, err, l.Term)
	}
	checkTestSchedule(t, d, sched)
}

// TestMigrateFromVersion2 opens a file written before schedules existed: it
// must gain the schedules table and keep the control plane's state.
func TestMigrateFromVersion2(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	path, raw := openRaw(t)
	for i, m := range migrations[:2] {
		if _, err := raw.Exec(m); err != nil {
			t.Fatalf("creating a version 2 schema, migration %d: %v", i+1, err)
		}
	}
	if _, err := raw.Exec(`PRAGMA user_version = 2`); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO leaders (name, leader_id, term, expires_at) VALUES ('cp', 's1', 7, ?1)`,
		now.Add(time.Minute).UnixNano()); err != nil {
		t.Fatal(err)
	}
	d := openMigrated(t, raw, path, 2)
	if l, err := d.LeaderAttempt(ctx, ebbdriver.LeaderParams{Name: "cp", ID: "s2", TTL: time.Minute, Now: now}); err != nil ||
		l.LeaderID != "s1" || l.Term != 7 {
		t.Errorf("LeaderAttempt after the upgrade = %+v, %v; want s1 leading in term 7", l, err)
	}
	sched := upsertTestSchedule(t, d, now)

	d = reopen(t, d, path)
	checkTestSchedule(t, d, sched)
}

// openRaw opens a new file in a temporary folder with database/sql alone,
// for a test to write an older schema into.
func openRaw(t *testing.T) (string, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ebb.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	return path, raw
}

// openMigrated closes raw, which holds the file at path in schema version
// version, and opens the file with the driver, which must migrate it to the
// current version. The driver is closed when the test ends.
func openMigrated(t *testing.T, raw *sql.DB, path string, version int) *Driver {
	t.Helper()
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("Open of a version %d file: %v", version, err)
	}
	t.Cleanup(func() { d.Close() })
	checkVersion(t, d)
	return d
}

// reopen closes d and opens its file at path again, which must then be at
// the current version without migrating again. The new driver is closed
// when the test ends.
func reopen(t *testing.T, d *Driver, path string) *Driver {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	checkVersion(t, d)
	return d
}

// upsertTestSchedule stores a fired schedule in an upgraded file.
func upsertTestSchedule(t *testing.T, d *Driver, now time.Time) *ebbtype.Schedule {
	t.Helper()
	s := &ebbtype.Schedule{Name: "nightly", Cron: "0 3 * * *", TZ: "UTC", CatchUp: "once", Kind: "report",
		Args: []byte(`{"a":1}`), Queue: "a", Headers: map[string]string{"h": "v"}, CreatedAt: now, UpdatedAt: now}
	if err := d.ScheduleUpsert(t.Context(), s); err != nil {
		t.Fatalf("ScheduleUpsert: %v", err)
	}
	s.LastTickAt, s.LastTaskID = now.Add(time.Minute), "task-1"
	if ok, err := d.ScheduleMarkFired(t.Context(), s.Name, s.LastTickAt, s.LastTaskID, now); err != nil || !ok {
		t.Fatalf("ScheduleMarkFired = %t, %v", ok, err)
	}
	return s
}

// checkTestSchedule reads back what upsertTestSchedule stored.
func checkTestSchedule(t *testing.T, d *Driver, want *ebbtype.Schedule) {
	t.Helper()
	l, err := d.ScheduleList(t.Context())
	if err != nil || len(l) != 1 {
		t.Fatalf("ScheduleList after reopening = %+v, %v; want %s", l, err, want.Name)
	}
	got := l[0]
	if got.Name != want.Name || got.Cron != want.Cron || got.Kind != want.Kind || string(got.Args) != string(want.Args) ||
		got.Headers["h"] != "v" || !got.LastTickAt.Equal(want.LastTickAt) || got.LastTaskID != want.LastTaskID ||
		!got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("schedule after reopening = %+v, want %+v", got, *want)
	}
}

func checkVersion(t *testing.T, d *Driver) {
	t.Helper()
	var v int
	if err := d.rdb.QueryRowContext(context.Background(), `PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != schemaVersion || schemaVersion < 3 {
		t.Errorf("user_version = %d, want %d (≥ 3)", v, schemaVersion)
	}
}
