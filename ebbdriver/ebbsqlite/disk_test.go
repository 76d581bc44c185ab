package ebbsqlite_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
)

// mountTmpfs mounts a tmpfs of the given size on a fresh directory, so a
// test can fill it up or make it read-only, and unmounts it when t ends.
// It needs root, as `bash scripts/test` runs in CI; it fails, never skips.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "ebbtest", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs on %s: %v: %s (this test needs root to give SQLite a disk it can fill)", size, dir, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func remount(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, opts, err, out)
	}
}

func integrityOK(t *testing.T, path string) {
	t.Helper()
	var res string
	if err := rawDB(t, path).QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("PRAGMA integrity_check on %s = %q, %v", path, res, err)
	}
}

// bigTask carries 4 KiB of args so a small disk fills in a few hundred.
func bigTask(now time.Time) *ebbtype.TaskInfo {
	tk := task("q", now)
	tk.EncodedArgs = []byte(`{"pad":"` + strings.Repeat("x", 4096) + `"}`)
	return tk
}

// TestDiskFull fills the disk under the database: enqueues, fetches and
// completions fail with an error that says the disk is full and what to do,
// every task acknowledged before stays readable, the file passes
// integrity_check, and once space returns the claims made before complete
// and every task runs.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := mountTmpfs(t, "1m")
	path := dir + "/ebb.db"
	d := openAt(t, path)
	now := time.Now()
	early := []*ebbtype.TaskInfo{task("q", now), task("q", now)}
	enqueue(t, d, early...)
	claimed := fetch(t, d, 2, "w", now, "q")
	if len(claimed) != 2 {
		t.Fatalf("claimed %d tasks, want 2", len(claimed))
	}

	acked := []string{early[0].ID, early[1].ID}
	var full error
	for i := 0; i < 2000 && full == nil; i++ {
		batch := []*ebbtype.TaskInfo{bigTask(now), bigTask(now), bigTask(now), bigTask(now)}
		if _, err := d.Enqueue(ctx, batch); err != nil {
			full = err
			break
		}
		for _, tk := range batch {
			acked = append(acked, tk.ID)
		}
	}
	if full == nil {
		t.Fatalf("8000 tasks of 4 KiB fit on a 1 MiB disk: the test did not fill it")
	}
	isFull := func(what string, err error) {
		t.Helper()
		if msg := err.Error(); !strings.Contains(msg, "disk is full") || !strings.Contains(msg, "free space") || !strings.Contains(msg, path) {
			t.Errorf("%s on a full disk: %q, want it to say the disk holding %s is full and to free space", what, msg, path)
		}
	}
	isFull("Enqueue", full)
	if len(acked) == 2 {
		t.Fatal("not one large task fit before the disk was full")
	}
	// Fill what room the failed batch left, then every write must refuse.
	for range 64 {
		if _, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{task("q", now)}); err != nil {
			break
		}
	}
	if _, err := d.Fetch(ctx, ebbdriver.FetchParams{Queues: []string{"q"}, Limit: 100, WorkerID: "w", LeaseToken: "t2", LeaseDuration: time.Minute, Now: now}); err != nil {
		isFull("Fetch", err)
	}
	done := func(tk *ebbtype.TaskInfo) ebbdriver.Completion {
		return ebbdriver.Completion{Queue: "q", ID: tk.ID, LeaseToken: tk.LeaseToken, Outcome: ebbdriver.OutcomeSucceeded,
			Result: []byte(`"` + strings.Repeat("r", 64<<10) + `"`), Now: now}
	}
	if _, err := d.Complete(ctx, []ebbdriver.Completion{done(claimed[0])}); err == nil {
		t.Error("a completion with a 64 KiB result fit on a full disk")
	} else {
		isFull("Complete", err)
	}
	integrityOK(t, path)
	for _, id := range acked {
		if _, err := d.TaskGet(ctx, id); err != nil {
			t.Fatalf("task %s acknowledged before the disk filled: %v", id, err)
		}
	}

	remount(t, dir, "size=64m")
	errs, err := d.Complete(ctx, []ebbdriver.Completion{done(claimed[0]), done(claimed[1])})
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("completing the claims made before the disk filled, once space returned: %v %v", err, errs)
	}
	ran := map[string]bool{claimed[0].ID: true, claimed[1].ID: true}
	for range 100 {
		got := fetch(t, d, 100, "w2", now.Add(2*time.Minute), "q") // past any claim the full disk refused
		if len(got) == 0 {
			break
		}
		cs := make([]ebbdriver.Completion, len(got))
		for i, tk := range got {
			cs[i] = ebbdriver.Completion{Queue: "q", ID: tk.ID, LeaseToken: tk.LeaseToken, Outcome: ebbdriver.OutcomeSucceeded, Now: now}
			ran[tk.ID] = true
		}
		if errs, err := d.Complete(ctx, cs); err != nil {
			t.Fatalf("Complete after space returned: %v", err)
		} else {
			for i, e := range errs {
				if e != nil {
					t.Fatalf("Complete %s after space returned: %v", got[i].ID, e)
				}
			}
		}
	}
	for _, id := range acked {
		if !ran[id] {
			t.Errorf("task %s, acknowledged before the disk filled, never ran", id)
		}
	}
	integrityOK(t, path)
}

// TestDiskReadOnly opens a database through a read-only mount of its
// directory: the first write fails with an error that names the file and
// says it cannot be written, the file is undamaged, and once the mount is
// writable again a new driver finds every task and writes.
func TestDiskReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := mountTmpfs(t, "16m")
	now := time.Now()
	before := []*ebbtype.TaskInfo{task("q", now), task("q", now), task("q", now)}
	w := openAt(t, dir+"/ebb.db")
	enqueue(t, w, before...)
	w.Close()

	ro := t.TempDir()
	for _, args := range [][]string{{"--bind", dir, ro}, {"-o", "remount,ro,bind", ro}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", ro).Run() })
	path := ro + "/ebb.db"
	d, err := ebbsqlite.Open(ctx, path, nil)
	if err == nil {
		_, err = d.Enqueue(ctx, []*ebbtype.TaskInfo{task("q", now)})
		d.Close()
	}
	if err == nil {
		t.Fatal("a write through a read-only mount succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "read-only") {
		t.Errorf("writing through a read-only mount: %q, want it to name %s and say the file system is read-only", msg, path)
	}

	remount(t, ro, "rw,bind")
	d = openAt(t, path)
	after := task("q", now)
	enqueue(t, d, after)
	for _, tk := range append(before, after) {
		if _, err := d.TaskGet(ctx, tk.ID); err != nil {
			t.Errorf("task %s: %v", tk.ID, err)
		}
	}
	if got := fetch(t, d, 10, "w", now, "q"); len(got) != 4 {
		t.Errorf("fetched %d tasks once writable again, want 4", len(got))
	}
	d.Close()
	integrityOK(t, path)
}
