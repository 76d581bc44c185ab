package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbtype"
)

// Beat: periodic schedules fired by the leading `ebb server`, each tick under
// the task id "beat:<name>:<tick as 20060102T150405Z>", so that a second
// enqueue of one tick collapses into the first.

const (
	// beatQueue is the queue of every schedule in these tests. The servers
	// run no pools (pools: []), so tick tasks stay queued where the test can
	// count them.
	beatQueue = "beat"
	// beatTTL and beatRenew make failover quick: a SIGKILLed leader's lease
	// runs out at most 3 s after its last renewal, and a follower's next
	// attempt comes at most 1 s later, so no replica leads for ~4 s at
	// worst. The renew interval must stay below TTL/2 (validation), and a
	// leader trusts itself only until renewal start + TTL − renew = 2 s, so
	// shorter leases would risk spurious step-downs on a loaded 2-CPU CI
	// machine, where this test runs next to the rest of the package.
	beatTTL   = 3 * time.Second
	beatRenew = 1 * time.Second
	// beatRefresh is how often the leader rereads the schedules (a copy of
	// internal/controlplane.beatRefresh): a schedule added by another process
	// fires within it. Waits on it add 10 s of slack.
	beatRefresh = 10 * time.Second
)

// beatTickID is the documented id of a tick's task, built here from the
// documentation rather than with internal/schedule.TaskID, so the test checks
// the format too.
func beatTickID(name string, tick time.Time) string {
	return "beat:" + name + ":" + tick.UTC().Format("20060102T150405Z")
}

// writeBeatConfig writes an `ebb server` config: the broker, the short lease,
// no pools and the given every-schedules (name → interval) of kind noop into
// beatQueue. The API address is given per replica with --listen.
func writeBeatConfig(t *testing.T, brokerURL string, every ...[2]string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "broker: %s\n", strconv.Quote(brokerURL))
	fmt.Fprintf(&b, "leader:\n  ttl: %q\n  renew_interval: %q\n", beatTTL, beatRenew)
	b.WriteString("pools: []\n")
	if len(every) > 0 {
		b.WriteString("schedules:\n")
		for _, s := range every {
			fmt.Fprintf(&b, "  - name: %q\n    every: %q\n    kind: noop\n    args: {from: config}\n    queue: %q\n", s[0], s[1], beatQueue)
		}
	}
	path := filepath.Join(t.TempDir(), "ebb.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return path
}

// beatReplica is one `ebb server` replica: a name and an API port that stay
// the same across restarts, and its current process.
type beatReplica struct {
	t    *testing.T
	name string
	cfg  string
	port int
	runs int
	srv  *ebbServer
	all  *[]*ebbServer // every process any replica ran, for their logs
}

func startBeatReplicas(t *testing.T, cfg string, n int) []*beatReplica {
	t.Helper()
	var all []*ebbServer
	rs := make([]*beatReplica, n)
	for i := range rs {
		rs[i] = &beatReplica{t: t, name: fmt.Sprintf("replica-%d", i+1), cfg: cfg, port: freePort(t), all: &all}
		rs[i].start()
	}
	return rs
}

// start runs the replica's next process, on the same port and config.
func (r *beatReplica) start() {
	r.t.Helper()
	r.runs++
	r.srv = startServer(r.t, fmt.Sprintf("%s-run%d", r.name, r.runs), r.cfg, r.port, "", "--listen", fmt.Sprintf("127.0.0.1:%d", r.port))
	*r.all = append(*r.all, r.srv)
}

func beatProcs(rs []*beatReplica) []*proc {
	out := make([]*proc, len(rs))
	for i, r := range rs {
		out[i] = r.srv.proc
	}
	return out
}

// beatLeaderNow asks every running replica whether it leads and returns the
// first that says so, or nil.
func beatLeaderNow(rs []*beatReplica) (*beatReplica, leaderJSON) {
	for _, r := range rs {
		if r.srv.exited() {
			continue
		}
		var l leaderJSON
		if r.srv.tryGet("/api/v1/leader", &l) == nil && l.Leading && l.LeaderID == l.Server {
			return r, l
		}
	}
	return nil, leaderJSON{}
}

// awaitBeatLeader polls the replicas until one leads, and returns it and
// when it was first seen leading.
func awaitBeatLeader(t *testing.T, rs []*beatReplica, timeout time.Duration) (*beatReplica, leaderJSON, time.Time) {
	t.Helper()
	var (
		r *beatReplica
		l leaderJSON
	)
	waitFor(t, timeout, "a replica to lead", func() (bool, string) {
		r, l = beatLeaderNow(rs)
		return r != nil, "no replica leads"
	}, beatProcs(rs)...)
	return r, l, time.Now()
}

// beatScheduleRow is one schedule of GET /api/v1/schedules and `ebb schedule
// list --json`, with the documented field names.
type beatScheduleRow struct {
	Name       string          `json:"name"`
	Cron       string          `json:"cron"`
	TZ         string          `json:"tz"`
	EveryNS    int64           `json:"every_ns"`
	CatchUp    string          `json:"catch_up"`
	Kind       string          `json:"kind"`
	Args       json.RawMessage `json:"args"`
	Queue      string          `json:"queue"`
	Priority   int             `json:"priority"`
	Paused     bool            `json:"paused"`
	LastTickAt *time.Time      `json:"last_tick_at"`
	LastTaskID string          `json:"last_task_id"`
	CreatedAt  time.Time       `json:"created_at"`
	Spec       string          `json:"spec"`
	NextRun    *time.Time      `json:"next_run"` // absent while paused
	Error      string          `json:"error"`
}

func findScheduleRow(rows []beatScheduleRow, name string) (beatScheduleRow, bool) {
	for _, r := range rows {
		if r.Name == name {
			return r, true
		}
	}
	return beatScheduleRow{}, false
}

// beatSchedule reads one schedule straight from the broker.
func (b *broker) beatSchedule(t *testing.T, name string) *ebbtype.Schedule {
	t.Helper()
	return read(t, "ScheduleGet "+name, func(ctx context.Context) (*ebbtype.Schedule, error) {
		return b.drv.ScheduleGet(ctx, name)
	}, ebbtype.ErrScheduleNotFound)
}

// taskOrNil returns a task, or nil if no task has that id.
func (b *broker) taskOrNil(t *testing.T, id string) *ebbtype.TaskInfo {
	t.Helper()
	return read(t, "TaskGet "+id, func(ctx context.Context) (*ebbtype.TaskInfo, error) {
		return b.drv.TaskGet(ctx, id)
	}, ebbtype.ErrTaskNotFound)
}

// checkTickTask checks what a tick's task carries.
func checkTickTask(t *testing.T, rec *ebbtype.TaskInfo, name string, tick time.Time) {
	t.Helper()
	if rec.Kind != "noop" || rec.Queue != beatQueue || rec.State != ebb.StateQueued ||
		rec.Headers["ebb-schedule"] != name || rec.Headers["ebb-tick"] != tick.UTC().Format(time.RFC3339) {
		t.Errorf("task %s: kind %q queue %q state %s headers %v; want a queued noop task in %q with ebb-schedule %q and ebb-tick %s",
			rec.ID, rec.Kind, rec.Queue, rec.State, rec.Headers, beatQueue, name, tick.UTC().Format(time.RFC3339))
	}
}

// beatLogLine is the leader's log line for each enqueue of a tick.
var beatLogLine = regexp.MustCompile(`beat: tick enqueued.* schedule=(\S+) tick=(\S+) .*duplicate=(true|false)`)

// noLeader is a stretch without a leader: from a SIGKILL of the leader until
// a replica was seen leading again.
type noLeader struct {
	killed, led string
	from, to    time.Time
}

// TestBeatExactlyOnceUnderFailover runs three `ebb server` replicas on one
// private Redis with two per-second schedules, one from the config file and
// one added with `ebb schedule add`, and for two minutes SIGKILLs whichever
// replica leads about every 7 s (then restarts it on its port). Afterwards it
// reads every tick's task by its deterministic id, second by second, and
// checks:
//
//   - no tick was enqueued twice: the queue's stored total equals the
//     distinct tick tasks found (so no duplicate under another id either),
//     and no two processes logged a fresh enqueue of one tick;
//   - a second enqueue collapses: three ticks a rival enqueued first were
//     logged by the leader as duplicates;
//   - every tick outside the no-leader windows (each SIGKILL until a replica
//     is seen leading again, ±1 s) was enqueued;
//   - catch-up "once" fires the latest missed tick: no task was enqueued a
//     second or more after its tick.
func TestBeatExactlyOnceUnderFailover(t *testing.T) {
	t.Parallel()
	const (
		duration  = 2 * time.Minute
		killEvery = 7 * time.Second
		// margin widens each no-leader window: before the kill, for a tick
		// the leader was enqueueing as it died; after the new leader shows,
		// for its beat to start and for the 100 ms polling.
		margin     = time.Second
		fromConfig = "tick-config"
		fromCLI    = "tick"
	)
	b := newBroker(t, "redis")
	cfg := writeBeatConfig(t, b.url, [2]string{fromConfig, "1s"})
	rs := startBeatReplicas(t, cfg, 3)
	leader, _, _ := awaitBeatLeader(t, rs, 30*time.Second)
	mustEbb(t, "", "schedule", "add", fromCLI, "noop", `{"from":"cli"}`, "--every", "1s", "--queue", beatQueue, "--broker", b.url)

	// Each schedule's window starts at its first tick: before it, the
	// config schedule was not stored yet, and the CLI's was not yet seen by
	// the leader (it rereads every 10 s, then fires only the latest tick).
	firstTick := map[string]time.Time{}
	created := map[string]time.Time{}
	waitFor(t, beatRefresh+10*time.Second, "both schedules to fire", func() (bool, string) {
		for _, name := range []string{fromConfig, fromCLI} {
			if rec := b.beatSchedule(t, name); rec != nil && !rec.LastTickAt.IsZero() {
				if _, ok := firstTick[name]; !ok {
					firstTick[name], created[name] = rec.LastTickAt, rec.CreatedAt
				}
			}
		}
		return len(firstTick) == 2, fmt.Sprintf("fired: %v (leader %s)", firstTick, leader.name)
	}, beatProcs(rs)...)

	// A rival enqueues three coming ticks of the CLI schedule first, as a
	// stale leader or a replica that lost the race would: the leader's own
	// enqueues of those ticks must collapse into the rival's tasks. (Kills
	// alone rarely land between a tick's enqueue and its record.)
	rival := map[string]bool{}
	rivalFrom := time.Now().Truncate(time.Second).Add(2 * time.Second)
	for i := range 3 {
		tick := rivalFrom.Add(time.Duration(i) * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := b.client.EnqueueRaw(ctx, "noop", json.RawMessage(`{"from":"cli"}`), &ebb.EnqueueOpts{
			ID: beatTickID(fromCLI, tick), Queue: beatQueue,
			Headers: map[string]string{"ebb-schedule": fromCLI, "ebb-tick": tick.UTC().Format(time.RFC3339)}})
		cancel()
		if err != nil || res.Duplicate {
			t.Fatalf("rival enqueue of tick %s: %+v, %v; want it stored first", tick, res, err)
		}
		rival[fromCLI+" "+tick.UTC().Format(time.RFC3339)] = true
	}

	// Kill the leader every ~7 s (jittered, so kills land at every point of
	// a second, including between a tick's enqueue and its record).
	var windows []noLeader
	deadline := time.Now().Add(duration)
	next := time.Now().Add(killEvery)
	for next.Before(deadline) {
		time.Sleep(time.Until(next))
		victim, _, _ := awaitBeatLeader(t, rs, 15*time.Second)
		killed := victim.srv.name
		killedAt := time.Now()
		victim.srv.kill()
		victim.start()
		successor, _, ledAt := awaitBeatLeader(t, rs, 15*time.Second)
		windows = append(windows, noLeader{killed: killed, led: successor.srv.name, from: killedAt, to: ledAt})
		next = killedAt.Add(killEvery + rand.N(time.Second) - time.Second/2)
	}
	// A leader runs (the last wait saw one): ticks up to now must all be
	// there. Stop every replica cleanly.
	end := time.Now()
	for _, r := range rs {
		r.srv.signal(syscall.SIGTERM)
	}
	for _, r := range rs {
		if st := r.srv.waitExit(30 * time.Second); st.ExitCode() != 0 {
			t.Errorf("%s exited with %v after SIGTERM, want exit code 0", r.srv.name, st)
		}
	}
	stopped := time.Now()

	// Every tick's task, second by second, from before the schedules
	// existed until after the last replica stopped.
	found := map[string]map[int64]*ebbtype.TaskInfo{}
	total := 0
	for _, name := range []string{fromConfig, fromCLI} {
		found[name] = map[int64]*ebbtype.TaskInfo{}
		for s := created[name].Unix() - 2; s <= stopped.Unix()+2; s++ {
			tick := time.Unix(s, 0)
			if rec := b.taskOrNil(t, beatTickID(name, tick)); rec != nil {
				checkTickTask(t, rec, name, tick)
				found[name][s] = rec
				total++
			}
		}
	}
	// The stored total counts every task stored in the queue, duplicates
	// excluded: equal to the tick tasks found, no task was stored twice or
	// under another id.
	stats := b.stats(t, beatQueue)
	duplicates := stats.Enqueued - int64(total)
	if duplicates != 0 || stats.Queued != int64(total) {
		t.Errorf("queue %s: %d tasks stored in total, %d queued; %d distinct tick tasks found: the difference (%d) are duplicate or stray enqueues",
			beatQueue, stats.Enqueued, stats.Queued, total, duplicates)
	}

	inWindow := func(tick time.Time) bool {
		for _, w := range windows {
			if !tick.Before(w.from.Add(-margin)) && !tick.After(w.to.Add(margin)) {
				return true
			}
		}
		return false
	}
	var expected, enqueued, missingIn int
	var missingOut []string
	for _, name := range []string{fromConfig, fromCLI} {
		for s := firstTick[name].Unix(); s <= end.Add(-margin).Unix(); s++ {
			tick := time.Unix(s, 0)
			expected++
			switch _, ok := found[name][s]; {
			case ok:
				enqueued++
			case inWindow(tick):
				missingIn++
			default:
				missingOut = append(missingOut, beatTickID(name, tick))
			}
		}
		if rec := b.beatSchedule(t, name); rec == nil || rec.LastTaskID != beatTickID(name, rec.LastTickAt) || found[name][rec.LastTickAt.Unix()] == nil {
			t.Errorf("schedule %s: stored state %+v: its last task must be its last tick's, and exist", name, rec)
		}
	}
	// Catch-up "once" fires the latest missed tick: no task was enqueued a
	// whole second or more after its tick (then a later tick was due), give
	// or take the few broker calls between beat reading the clock and the
	// client stamping the task.
	var late int
	var latest time.Duration
	for name, ticks := range found {
		for s, rec := range ticks {
			d := rec.EnqueuedAt.Sub(time.Unix(s, 0))
			latest = max(latest, d)
			if d > time.Second/2 {
				late++
			}
			if d >= time.Second+time.Second/2 {
				t.Errorf("tick %s of %s enqueued %s after its time: a later tick was already due", time.Unix(s, 0).UTC().Format(time.TimeOnly), name, d.Round(time.Millisecond))
			}
		}
	}
	if len(missingOut) > 0 {
		t.Errorf("%d ticks outside every no-leader window were never enqueued: %s", len(missingOut), strings.Join(missingOut[:min(len(missingOut), 20)], ", "))
	}

	// The servers' own account: no tick reported as freshly enqueued twice
	// (by two leaders); the duplicates they report are re-enqueues that
	// collapsed into the first.
	fresh := map[string]string{}
	collapsed := map[string]bool{}
	for _, s := range *rs[0].all {
		for line := range strings.SplitSeq(s.output(), "\n") {
			m := beatLogLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			tick, err := time.Parse(time.RFC3339, m[2]) // slog writes milliseconds
			if err != nil {
				t.Fatalf("%s: log line with a bad tick: %s", s.name, line)
			}
			key := m[1] + " " + tick.UTC().Format(time.RFC3339)
			switch {
			case m[3] == "true":
				collapsed[key] = true
			case fresh[key] != "":
				t.Errorf("tick %s enqueued as new by %s and by %s", key, fresh[key], s.name)
			default:
				fresh[key] = s.name
			}
		}
	}
	for k := range rival {
		if !collapsed[k] || fresh[k] != "" {
			t.Errorf("tick %s, enqueued first by a rival: the leader logged it collapsed %v, as new by %q; want collapsed", k, collapsed[k], fresh[k])
		}
	}

	var longest time.Duration
	for _, w := range windows {
		d := w.to.Sub(w.from)
		longest = max(longest, d)
		if d > failoverBound {
			t.Errorf("no leader for %s after SIGKILL of %s, until %s led (bound %s)", d.Round(time.Millisecond), w.killed, w.led, failoverBound)
		}
	}
	if len(windows) < 10 {
		t.Errorf("only %d kills in %s; want about one per %s", len(windows), duration, killEvery)
	}
	t.Logf("beat under failover (redis, 3 replicas, ttl %s, renew %s, %s): ticks expected %d, enqueued %d, "+
		"missing inside no-leader windows %d, missing outside %d (must be 0), duplicates %d (must be 0; stored %d, distinct tick tasks %d); "+
		"kills %d, longest no-leader window %s; %d ticks enqueued late by a new leader's catch-up (latest %s after its tick); "+
		"re-enqueues collapsed by id %d (%d from the rival), fresh enqueues logged %d",
		beatTTL, beatRenew, duration, expected, enqueued, missingIn, len(missingOut), duplicates, stats.Enqueued, total,
		len(windows), longest.Round(time.Millisecond), late, latest.Round(time.Millisecond), len(collapsed), len(rival), len(fresh))
}

// TestBeatScheduleAddedByCLIFiresAfterAdderStops adds a per-second schedule
// with `ebb schedule add` while two replicas run, waits until the leader
// fires it (seen through the leader's API), then stops that replica cleanly
// (SIGTERM): the other replica must take over and go on firing it, the first
// tick within TTL + 5 s of the stop, then every tick.
func TestBeatScheduleAddedByCLIFiresAfterAdderStops(t *testing.T) {
	t.Parallel()
	eachBroker(t, testBeatAfterAdderStops)
}

func testBeatAfterAdderStops(t *testing.T, b *broker) {
	const name = "heartbeat"
	cfg := writeBeatConfig(t, b.url)
	rs := startBeatReplicas(t, cfg, 2)
	leader, _, _ := awaitBeatLeader(t, rs, 30*time.Second)
	survivor := rs[0]
	if leader == rs[0] {
		survivor = rs[1]
	}
	added := time.Now()
	mustEbb(t, "", "schedule", "add", name, "noop", `{"from":"cli"}`, "--every", "1s", "--queue", beatQueue, "--broker", b.url)

	// The leader picks the schedule up on its next reread and fires it;
	// its API (the one this test uses, so the replica stopped below) shows
	// the schedule with its last task.
	var row beatScheduleRow
	waitFor(t, beatRefresh+10*time.Second, leader.name+" to fire the schedule added by the CLI", func() (bool, string) {
		var rows []beatScheduleRow
		if err := leader.srv.tryGet("/api/v1/schedules", &rows); err != nil {
			return false, err.Error()
		}
		var ok bool
		row, ok = findScheduleRow(rows, name)
		return ok && row.LastTaskID != "", fmt.Sprintf("%+v", rows)
	}, beatProcs(rs)...)
	if row.LastTickAt == nil || row.LastTaskID != beatTickID(name, *row.LastTickAt) || row.Queue != beatQueue || row.EveryNS != int64(time.Second) || !jsonEqual(row.Args, `{"from":"cli"}`) {
		t.Fatalf("schedule as the leader's API shows it: %+v", row)
	}
	firstSeen := time.Since(added)
	if rec := b.taskOrNil(t, row.LastTaskID); rec == nil {
		t.Fatalf("the schedule's last task %s does not exist", row.LastTaskID)
	} else {
		checkTickTask(t, rec, name, *row.LastTickAt)
	}

	leader.srv.stop(30 * time.Second)
	stoppedAt := time.Now()

	// The survivor fires a tick later than the stop within TTL + 5 s, and
	// then each following tick.
	var firstAfter time.Time
	waitFor(t, beatTTL+5*time.Second, survivor.name+" to fire a tick after "+leader.name+" stopped", func() (bool, string) {
		for s := stoppedAt.Unix() + 1; s <= time.Now().Unix(); s++ {
			if b.taskOrNil(t, beatTickID(name, time.Unix(s, 0))) != nil {
				firstAfter = time.Unix(s, 0)
				return true, ""
			}
		}
		return false, "no tick task after the stop yet"
	}, survivor.srv.proc)
	takeover := time.Since(stoppedAt)
	const more = 4
	waitFor(t, more*time.Second+5*time.Second, fmt.Sprintf("%d more ticks after %s", more, firstAfter.Format(time.TimeOnly)), func() (bool, string) {
		for i := 0; i <= more; i++ {
			tick := firstAfter.Add(time.Duration(i) * time.Second)
			rec := b.taskOrNil(t, beatTickID(name, tick))
			if rec == nil {
				if time.Now().After(tick.Add(2 * time.Second)) {
					t.Fatalf("tick %s was not enqueued by the survivor", beatTickID(name, tick))
				}
				return false, fmt.Sprintf("%d of %d", i, more+1)
			}
			checkTickTask(t, rec, name, tick)
		}
		return true, ""
	}, survivor.srv.proc)

	var l leaderJSON
	survivor.srv.get(t, "/api/v1/leader", &l)
	var rows []beatScheduleRow
	survivor.srv.get(t, "/api/v1/schedules", &rows)
	last, _ := findScheduleRow(rows, name)
	if !l.Leading || last.LastTickAt == nil || last.LastTickAt.Before(firstAfter) {
		t.Errorf("%s: leader %+v, schedule %+v; want it leading, with a last tick at or after %s", survivor.name, l, last, firstAfter)
	}
	survivor.srv.stop(30 * time.Second)
	t.Logf("%s: the leader fired the CLI's schedule %s after the add; after SIGTERM of %s, %s fired tick %s %s after the stop, then every tick",
		b.kind, firstSeen.Round(time.Millisecond), leader.name, survivor.name, firstAfter.UTC().Format(time.TimeOnly), takeover.Round(time.Millisecond))
}

// TestBeatUnreadableScheduleNoBusyLoop stores a schedule the broker cannot
// decode next to a good one: the list marks it unreadable instead of failing
// as a whole, the leader reports it once (not once per loop), and the good
// schedule keeps firing every second.
func TestBeatUnreadableScheduleNoBusyLoop(t *testing.T) {
	t.Parallel()
	const good = "good"
	b := newBroker(t, "redis")
	cfg := writeBeatConfig(t, b.url, [2]string{good, "1s"})
	rs := startBeatReplicas(t, cfg, 1)
	srv := rs[0].srv
	awaitBeatLeader(t, rs, 30*time.Second)
	waitFor(t, 10*time.Second, "the good schedule to fire", func() (bool, string) {
		rec := b.beatSchedule(t, good)
		return rec != nil && !rec.LastTickAt.IsZero(), fmt.Sprintf("%+v", rec)
	}, srv.proc)

	// A definition that is not JSON, under the documented key layout.
	opts, err := redis.ParseURL(b.url)
	if err != nil {
		t.Fatalf("parse %s: %v", b.url, err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := ebbredis.PrefixDefault + ":schedules:{ctl}:"
	if err := rdb.HSet(ctx, p+"s:broken", "def", "not json", "created", strconv.FormatInt(time.Now().UnixNano(), 10)).Err(); err != nil {
		t.Fatalf("store a broken schedule: %v", err)
	}
	if err := rdb.ZAdd(ctx, p+"names", redis.Z{Member: "broken"}).Err(); err != nil {
		t.Fatalf("store a broken schedule: %v", err)
	}

	// The next reread (within the refresh interval) returns the broken
	// schedule marked unreadable: the leader reports it once and keeps
	// firing the good one from the same read, without retrying in a loop.
	const warning = "beat: schedule cannot run"
	var from time.Time
	waitFor(t, beatRefresh+10*time.Second, "the leader to report the broken schedule", func() (bool, string) {
		from = time.Now()
		return strings.Contains(srv.output(), warning), "no report yet"
	}, srv.proc)
	const watch = 5
	first := from.Truncate(time.Second).Add(time.Second)
	waitFor(t, (watch+5)*time.Second, fmt.Sprintf("%d ticks of %s next to the broken schedule", watch, good), func() (bool, string) {
		for i := range watch {
			tick := first.Add(time.Duration(i) * time.Second)
			if b.taskOrNil(t, beatTickID(good, tick)) == nil {
				if time.Now().After(tick.Add(2 * time.Second)) {
					t.Fatalf("tick %s was not enqueued next to the broken schedule", beatTickID(good, tick))
				}
				return false, fmt.Sprintf("%d of %d", i, watch)
			}
		}
		return true, ""
	}, srv.proc)
	elapsed := time.Since(from)
	failed := strings.Count(srv.output(), warning)
	if failed != 1 {
		t.Errorf("the broken schedule was reported %d times in %s, want once", failed, elapsed.Round(time.Millisecond))
	}
	if strings.Contains(srv.output(), "beat: cannot read schedules") {
		t.Errorf("one broken schedule made the whole schedule list unreadable")
	}
	srv.stop(30 * time.Second)
	t.Logf("a broken schedule: reported %d time(s) in %s, and the good schedule fired every second", failed, elapsed.Round(time.Millisecond))
}

// TestScheduleCLI drives `ebb schedule` against a SQLite file with no server
// running: add (cron with a time zone, and every), list --json with next
// runs, pause and resume, run-now, rm, and the errors: rm of a missing
// schedule exits 3, a bad cron field or no --cron/--every/--at exits 2 with
// a message that says what is wrong.
func TestScheduleCLI(t *testing.T) {
	t.Parallel()
	b := newBroker(t, "sqlite")
	dir := t.TempDir()
	ebbS := func(args ...string) []string { return append(append([]string{"schedule"}, args...), "--broker", b.url) }
	list := func() []beatScheduleRow {
		t.Helper()
		var rows []beatScheduleRow
		mustEbbJSON(t, dir, &rows, ebbS("list", "--json")...)
		return rows
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatalf("time zone data: %v", err)
	}
	// next3am is the first 03:00 in Berlin after now.
	next3am := func(now time.Time) time.Time {
		n := now.In(berlin)
		at := time.Date(n.Year(), n.Month(), n.Day(), 3, 0, 0, 0, berlin)
		if !at.After(now) {
			at = time.Date(n.Year(), n.Month(), n.Day()+1, 3, 0, 0, 0, berlin)
		}
		return at
	}

	before := time.Now()
	mustEbb(t, dir, ebbS("add", "nightly", "report", `{"day":"yesterday"}`, "--cron", "0 3 * * *", "--tz", "Europe/Berlin", "--queue", "reports", "--priority", "high")...)
	mustEbb(t, dir, ebbS("add", "tick", "noop", "--every", "1m")...)
	rows := list()
	after := time.Now()
	if len(rows) != 2 || rows[0].Name != "nightly" || rows[1].Name != "tick" {
		t.Fatalf("list after two adds: %+v; want nightly and tick, by name", rows)
	}
	nightly, tick := rows[0], rows[1]
	if nightly.Cron != "0 3 * * *" || nightly.TZ != "Europe/Berlin" || nightly.Kind != "report" || nightly.Queue != "reports" ||
		nightly.Priority != int(ebb.PriorityHigh) || nightly.CatchUp != "once" || nightly.Paused || nightly.LastTickAt != nil ||
		!jsonEqual(nightly.Args, `{"day":"yesterday"}`) || nightly.Error != "" {
		t.Errorf("nightly as listed: %+v", nightly)
	}
	if nightly.NextRun == nil || (!nightly.NextRun.Equal(next3am(before)) && !nightly.NextRun.Equal(next3am(after))) {
		t.Errorf("nightly: next_run %v, want the next 03:00 in Berlin (%s)", nightly.NextRun, next3am(after))
	}
	if tick.EveryNS != int64(time.Minute) || tick.Kind != "noop" || tick.Queue != ebb.QueueDefault || tick.Paused || tick.Error != "" {
		t.Errorf("tick as listed: %+v", tick)
	}
	// An every schedule ticks at whole seconds from its creation.
	if want := tick.CreatedAt.Truncate(time.Second).Add(time.Minute); tick.NextRun == nil || !tick.NextRun.Equal(want) {
		t.Errorf("tick: next_run %v, want %s (a minute after its creation %s)", tick.NextRun, want, tick.CreatedAt)
	}
	if out := mustEbb(t, dir, ebbS("list")...).stdout; !strings.Contains(out, "NEXT RUN") || !strings.Contains(out, "nightly") || !strings.Contains(out, "tick") {
		t.Errorf("list as a table:\n%s", out)
	}

	// Pause: paused, no next run; the other schedule is untouched.
	mustEbb(t, dir, ebbS("pause", "nightly")...)
	rows = list()
	if p, _ := findScheduleRow(rows, "nightly"); !p.Paused || p.NextRun != nil {
		t.Errorf("nightly after pause: paused %v, next_run %v; want paused with no next run", p.Paused, p.NextRun)
	}
	if o, _ := findScheduleRow(rows, "tick"); o.Paused || o.NextRun == nil {
		t.Errorf("tick after pausing nightly: %+v", o)
	}
	resumedAt := time.Now().Truncate(time.Second)
	mustEbb(t, dir, ebbS("resume", "nightly")...)
	resumed, _ := findScheduleRow(list(), "nightly")
	if resumed.Paused || resumed.NextRun == nil || !resumed.NextRun.Equal(*nightly.NextRun) {
		t.Errorf("nightly after resume: paused %v, next_run %v; want running with next run %v", resumed.Paused, resumed.NextRun, nightly.NextRun)
	}
	// Resume does not catch up ticks missed while paused: it records the
	// resume time as the last tick.
	if resumed.LastTickAt == nil || resumed.LastTickAt.Before(resumedAt) {
		t.Errorf("nightly after resume: last tick %v, want the resume time (≥ %s)", resumed.LastTickAt, resumedAt)
	}

	// run-now enqueues the schedule's task at once, outside its ticks.
	out := mustEbb(t, dir, ebbS("run-now", "nightly")...).stdout
	id, ok := strings.CutPrefix(strings.TrimSpace(out), "enqueued ")
	if !ok || id == "" {
		t.Fatalf("run-now printed %q, want \"enqueued <task id>\"", out)
	}
	rec := b.task(t, id)
	if rec.Kind != "report" || rec.Queue != "reports" || rec.Priority != ebb.PriorityHigh || rec.State != ebb.StateQueued ||
		rec.Headers["ebb-schedule"] != "nightly" || !jsonEqual(rec.EncodedArgs, `{"day":"yesterday"}`) {
		t.Errorf("run-now task: %s kind %q queue %q priority %d headers %v args %s; want the schedule's task with header ebb-schedule nightly",
			describe(rec), rec.Kind, rec.Queue, rec.Priority, rec.Headers, rec.EncodedArgs)
	}
	if n := b.stats(t, "reports").Enqueued; n != 1 {
		t.Errorf("queue reports: %d tasks stored, want the one run-now task", n)
	}
	if p, _ := findScheduleRow(list(), "nightly"); p.LastTickAt == nil || !p.LastTickAt.Equal(*resumed.LastTickAt) {
		t.Errorf("nightly after run-now: last tick %v, want %v; run-now must not move it", p.LastTickAt, resumed.LastTickAt)
	}

	// rm: gone; again, or any action on a missing schedule: exit 3.
	mustEbb(t, dir, ebbS("rm", "nightly")...)
	mustEbb(t, dir, ebbS("rm", "tick")...)
	if rows := list(); len(rows) != 0 {
		t.Errorf("list after rm of both: %+v, want none", rows)
	}
	for _, action := range []string{"rm", "pause", "resume", "run-now"} {
		if r := runEbb(t, dir, ebbS(action, "nightly")...); r.code != 3 || !strings.Contains(r.stderr, `"nightly"`) {
			t.Errorf("schedule %s of a removed schedule: exit %d, stderr %q; want exit 3 naming it", action, r.code, r.stderr)
		}
	}

	// Bad input: exit 2, a message naming the problem, nothing stored.
	for _, c := range []struct {
		flags []string
		want  []string
	}{
		{[]string{"--cron", "61 * * * *"}, []string{"minute", "61"}},
		{[]string{"--cron", "0 25 * * *"}, []string{"hour", "25"}},
		{[]string{"--cron", "0 0 32 * *"}, []string{"day of month", "32"}},
		{[]string{"--cron", "0 0 1 13 *"}, []string{"month", "13"}},
		{[]string{"--cron", "0 0 * * FUNDAY"}, []string{"day of week", "FUNDAY"}},
		{[]string{"--cron", "0 3 * *"}, []string{"4 fields"}},
		{[]string{"--cron", "0 3 * * *", "--tz", "Mars/Olympus"}, []string{"Mars/Olympus"}},
		{nil, []string{"cron", "every", "at"}},
		{[]string{"--cron", "0 3 * * *", "--every", "1h"}, []string{"only one"}},
		{[]string{"--every", "500ms"}, []string{"at least 1s"}},
	} {
		args := append([]string{"add", "bad", "noop"}, c.flags...)
		r := runEbb(t, dir, ebbS(args...)...)
		ok := r.code == 2
		for _, w := range c.want {
			ok = ok && strings.Contains(r.stderr, w)
		}
		if !ok {
			t.Errorf("schedule %s: exit %d, stderr %q; want exit 2 with a message containing %q", strings.Join(args, " "), r.code, r.stderr, c.want)
		}
	}
	if rows := list(); len(rows) != 0 {
		t.Errorf("list after bad adds: %+v, want none", rows)
	}
	if r := runEbb(t, dir, ebbS("frobnicate")...); r.code != 2 {
		t.Errorf("schedule frobnicate: exit %d, want 2", r.code)
	}
}
