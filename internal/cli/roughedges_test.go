package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/brokerurl"
	"github.com/ebbq/ebb/internal/controlplane"
)

// These tests run the CLI in-process against a SQLite broker in a temporary
// directory. None is parallel: Main sets go-redis's global logger, and the
// commands read EBB_* variables.

type cliRun struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, args ...string) cliRun {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(args, &stdout, &stderr)
	return cliRun{code, stdout.String(), stderr.String()}
}

// mustCLI runs a command that must succeed.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	r := runCLI(t, args...)
	if r.code != ExitOK {
		t.Fatalf("ebb %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// testBroker returns a fresh SQLite broker's URL and its driver, for the
// state (leaders, decisions) no command writes.
func testBroker(t *testing.T) (string, *brokerurl.Broker) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "EBB_") {
			t.Setenv(k, "")
		}
	}
	url := "sqlite:" + filepath.Join(t.TempDir(), "ebb.db")
	b, err := brokerurl.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return url, b
}

func TestDoubleDashEndsFlags(t *testing.T) {
	url, b := testBroker(t)

	// Args JSON that starts with '-' is a number, not a flag, after "--";
	// flags before it still apply.
	out := mustCLI(t, "enqueue", "--broker", url, "--queue", "dashes", "--", "noop", "-1")
	id, state, _ := strings.Cut(strings.TrimSpace(out), " ")
	if state != "queued" {
		t.Fatalf("enqueue printed %q, want \"<id> queued\"", out)
	}
	info, err := b.Client.Task(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if string(info.EncodedArgs) != "-1" || info.Queue != "dashes" || info.Kind != "noop" {
		t.Errorf("task %s: kind %q queue %q args %s; want noop in dashes with args -1", id, info.Kind, info.Queue, info.EncodedArgs)
	}

	// After "--" even a token spelled like a flag is positional.
	r := runCLI(t, "enqueue", "--broker", url, "--", "noop", "--queue")
	const want = `ebb enqueue: ARGS_JSON "--queue" is not valid JSON; quote it for the shell, e.g. '{"ms": 500}'` + "\n"
	if r.code != ExitUsage || r.stderr != want {
		t.Errorf("enqueue -- noop --queue: exit %d, stderr %q; want exit 2 and %q", r.code, r.stderr, want)
	}

	// Positionals on both sides of "--" keep their order.
	out = mustCLI(t, "enqueue", "noop", "--broker", url, "--json", "--", `{"a":1}`)
	var res []ebb.EnqueueResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		t.Fatalf("enqueue --json printed %q: %v", out, err)
	}
	if info, err := b.Client.Task(t.Context(), res[0].ID); err != nil || string(info.EncodedArgs) != `{"a":1}` {
		t.Errorf("task %s: %+v, %v; want args {\"a\":1}", res[0].ID, info, err)
	}
}

func TestNoArgumentsIsBadUsage(t *testing.T) {
	r := runCLI(t)
	if r.code != ExitUsage || r.stdout != "" || !strings.HasPrefix(r.stderr, "ebb — a task queue") {
		t.Errorf("ebb with no arguments: exit %d, stdout %q, stderr %q; want exit 2 and the help on stderr", r.code, r.stdout, r.stderr)
	}
	for _, arg := range []string{"help", "-h", "--help"} {
		r := runCLI(t, arg)
		if r.code != ExitOK || r.stderr != "" || !strings.HasPrefix(r.stdout, "ebb — a task queue") {
			t.Errorf("ebb %s: exit %d, stdout %q, stderr %q; want exit 0 and the help on stdout", arg, r.code, r.stdout, r.stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	// A test binary has build information but no VCS stamp.
	for _, arg := range []string{"version", "--version", "-version", "-v"} {
		r := runCLI(t, arg)
		const want = "ebb dev (no VCS information: built outside a git checkout or with -buildvcs=false)\n"
		if r.code != ExitOK || r.stdout != want || r.stderr != "" {
			t.Errorf("ebb %s: exit %d, stdout %q, stderr %q; want exit 0 and %q", arg, r.code, r.stdout, r.stderr, want)
		}
	}

	// A build in a checkout: Go stamps the commit and derives a
	// pseudo-version from it, which must not replace "dev".
	stamped := func(settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Path: "github.com/ebbq/ebb", Version: "v0.0.0-20261201210000-3b5313a1c2d4+dirty"},
				Settings: settings}, true
		}
	}
	defer func(old func() (*debug.BuildInfo, bool)) { readBuildInfo = old }(readBuildInfo)
	for _, tc := range []struct {
		name string
		info func() (*debug.BuildInfo, bool)
		want string
	}{
		{"dirty", stamped(
			debug.BuildSetting{Key: "vcs", Value: "git"},
			debug.BuildSetting{Key: "vcs.revision", Value: "3b5313a1c2d4e5f60718293a4b5c6d7e8f901234"},
			debug.BuildSetting{Key: "vcs.time", Value: "2026-12-01T21:00:00Z"},
			debug.BuildSetting{Key: "vcs.modified", Value: "true"},
		), "ebb dev (commit 3b5313a1c2d4, 2026-12-01T21:00:00Z, dirty)\n"},
		{"clean", stamped(
			debug.BuildSetting{Key: "vcs.revision", Value: "3b5313a1c2d4e5f60718293a4b5c6d7e8f901234"},
			debug.BuildSetting{Key: "vcs.time", Value: "2026-12-01T21:00:00Z"},
			debug.BuildSetting{Key: "vcs.modified", Value: "false"},
		), "ebb dev (commit 3b5313a1c2d4, 2026-12-01T21:00:00Z)\n"},
		{"go install of a release", func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Path: "github.com/ebbq/ebb", Version: "v1.4.0"}}, true
		}, "ebb v1.4.0 (no VCS information: built outside a git checkout or with -buildvcs=false)\n"},
		{"no build information", func() (*debug.BuildInfo, bool) { return nil, false }, "ebb dev (no build information in this binary)\n"},
	} {
		readBuildInfo = tc.info
		if r := runCLI(t, "version"); r.code != ExitOK || r.stdout != tc.want {
			t.Errorf("%s: ebb version: exit %d, stdout %q; want %q", tc.name, r.code, r.stdout, tc.want)
		}
	}
}

func TestScheduleListNamesTheZone(t *testing.T) {
	url, b := testBroker(t)
	mustCLI(t, "schedule", "add", "nightly", "noop", "--broker", url, "--cron", "0 3 * * *", "--tz", "Europe/Berlin")
	// Resuming marks the schedule fired now, so LAST RUN is set too.
	mustCLI(t, "schedule", "pause", "nightly", "--broker", url)
	mustCLI(t, "schedule", "resume", "nightly", "--broker", url)
	rows, err := b.Client.ScheduleList(t.Context())
	if err != nil || len(rows) != 1 || rows[0].NextRun.IsZero() || rows[0].LastTickAt.IsZero() {
		t.Fatalf("ScheduleList = %+v, %v; want nightly with a last and a next run", rows, err)
	}
	out := mustCLI(t, "schedule", "list", "--broker", url)
	for what, at := range map[string]time.Time{"LAST RUN": rows[0].LastTickAt, "NEXT RUN": rows[0].NextRun} {
		want := at.Local().Format("2006-01-02 15:04:05 MST")
		if !strings.Contains(out, want) {
			t.Errorf("schedule list shows %s without its zone: want %q in\n%s", what, want, out)
		}
	}
}

func TestScheduleAddNamesTheBadFlag(t *testing.T) {
	url, b := testBroker(t)
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--cron", "0 3 * * *", "--tz", "Mars/Olympus"},
			`ebb schedule: --tz "Mars/Olympus": unknown time zone: use an IANA name such as Europe/Berlin or America/New_York` + "\n"},
		{[]string{"--cron", "0 3 * * *", "--tz", "Local"},
			`ebb schedule: --tz "Local": depends on each machine's setting: name the zone (e.g. Europe/Berlin)` + "\n"},
		{[]string{"--every", "0s"}, "ebb schedule: --every 0s: must be at least 1s\n"},
		{[]string{"--every", "500ms"}, "ebb schedule: --every 500ms: must be at least 1s\n"},
		{[]string{"--every", "1500ms"}, "ebb schedule: --every 1.5s: use a whole number of seconds\n"},
		// Not given at all is still the record's "set one of".
		{nil, `ebb schedule: schedule "bad": set one of cron, every and at` + "\n"},
	} {
		args := append([]string{"schedule", "add", "bad", "noop", "--broker", url}, tc.flags...)
		if r := runCLI(t, args...); r.code != ExitUsage || r.stderr != tc.want {
			t.Errorf("schedule add %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.flags, " "), r.code, r.stderr, tc.want)
		}
	}
	if rows, err := b.Client.ScheduleList(t.Context()); err != nil || len(rows) != 0 {
		t.Errorf("schedules after the bad adds: %+v, %v; want none", rows, err)
	}
}

func TestNotFoundIsOneSentence(t *testing.T) {
	url, _ := testBroker(t)
	for _, tc := range []struct {
		args []string
		want string // the whole stderr; "" checks only that it does not stutter
	}{
		{[]string{"inspect", "task", "no-such-task"}, "ebb inspect: task no-such-task not found\n"},
		{[]string{"inspect", "task", "no-such-task", "--json"}, "ebb inspect: task no-such-task not found\n"},
		{[]string{"cancel", "no-such-task"}, "ebb cancel: task no-such-task not found\n"},
		{[]string{"schedule", "rm", "no such"}, `ebb schedule: no schedule named "no such" to remove (see ebb schedule list)` + "\n"},
		{[]string{"schedule", "pause", "nope"}, `ebb schedule: no schedule named "nope" to pause (see ebb schedule list)` + "\n"},
		{[]string{"schedule", "resume", "nope"}, `ebb schedule: no schedule named "nope" to resume (see ebb schedule list)` + "\n"},
		{[]string{"schedule", "run-now", "nope"}, `ebb schedule: no schedule named "nope" to run (see ebb schedule list)` + "\n"},
		{[]string{"dead", "retry", "no-such-task"}, ""},
		{[]string{"dead", "purge", "no-such-task", "other"}, ""},
	} {
		r := runCLI(t, append(tc.args, "--broker", url)...)
		name := strings.Join(tc.args, " ")
		if r.code != ExitNotFound {
			t.Errorf("ebb %s: exit %d, want %d (not found); stderr %q", name, r.code, ExitNotFound, r.stderr)
		}
		if tc.want != "" && r.stderr != tc.want {
			t.Errorf("ebb %s: stderr %q, want %q", name, r.stderr, tc.want)
		}
		if strings.Count(r.stderr, "\n") != 1 || strings.Count(r.stderr, "not found") > 1 ||
			strings.Count(r.stderr, "ebb") != 1+strings.Count(tc.want, "see ebb") || strings.Contains(r.stderr, "ebbsqlite") ||
			strings.HasSuffix(r.stderr, ": task not found\n") {
			t.Errorf("ebb %s: stderr %q stutters; want one sentence", name, r.stderr)
		}
	}
}

func TestInspectScalingSaysWhetherAControlPlaneLeads(t *testing.T) {
	url, b := testBroker(t)
	ctl := b.Driver()
	ctx := t.Context()

	const nobody = "no scaling decision yet, and no control plane leads: is `ebb server` or `ebb up` running?\n"
	if out := mustCLI(t, "inspect", "scaling", "--broker", url); out != nobody {
		t.Errorf("inspect scaling of an empty broker = %q, want %q", out, nobody)
	}
	if out := mustCLI(t, "inspect", "scaling", "--json", "--broker", url); out != "[]\n" {
		t.Errorf("inspect scaling --json of an empty broker = %q, want []", out)
	}

	// Elected as the server elects itself: controlplane.LeaderName must be
	// the name the client reads.
	l, err := ctl.LeaderAttempt(ctx, lead("server-test-1"))
	if err != nil || l.LeaderID != "server-test-1" {
		t.Fatalf("LeaderAttempt = %+v, %v", l, err)
	}
	want := "no scaling decision yet: the control plane (leader server-test-1, term 1) has seen no reason to scale\n"
	if out := mustCLI(t, "inspect", "scaling", "--broker", url); out != want {
		t.Errorf("inspect scaling with a leader = %q, want %q", out, want)
	}
	want = `no scaling decision for pool "web" yet: the control plane (leader server-test-1, term 1) has seen no reason to scale` + "\n"
	if out := mustCLI(t, "inspect", "scaling", "--pool", "web", "--broker", url); out != want {
		t.Errorf("inspect scaling --pool web with a leader = %q, want %q", out, want)
	}

	// A leader that stopped cleanly leads no more.
	if err := ctl.LeaderResign(ctx, controlplane.LeaderName, "server-test-1"); err != nil {
		t.Fatal(err)
	}
	if out := mustCLI(t, "inspect", "scaling", "--broker", url); out != nobody {
		t.Errorf("inspect scaling after the leader resigned = %q, want %q", out, nobody)
	}

	// --json shows a decision's inputs as the JSON object they are.
	l, err = ctl.LeaderAttempt(ctx, lead("server-test-2"))
	if err != nil {
		t.Fatal(err)
	}
	d := &ebbtype.Decision{Pool: "web", At: time.Now(), Term: l.Term, LeaderID: l.LeaderID, From: 0, To: 2,
		Action: "up", Reason: "web: backlog", Inputs: json.RawMessage(`{"queued":30,"in_flight":0}`)}
	if err := ctl.DecisionAppend(ctx, controlplane.LeaderName, d); err != nil {
		t.Fatal(err)
	}
	out := mustCLI(t, "inspect", "scaling", "--json", "--broker", url)
	var got []struct {
		Pool   string          `json:"pool"`
		Inputs json.RawMessage `json:"inputs"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		t.Fatalf("inspect scaling --json = %s (%v), want one decision", out, err)
	}
	var inputs map[string]float64
	if err := json.Unmarshal(got[0].Inputs, &inputs); err != nil || inputs["queued"] != 30 {
		t.Errorf("inspect scaling --json inputs = %s (%v), want the object {\"queued\":30,…}", got[0].Inputs, err)
	}
	if out := mustCLI(t, "inspect", "scaling", "--broker", url); !strings.Contains(out, "web: backlog") {
		t.Errorf("inspect scaling with a decision = %q, want it listed", out)
	}
}

// lead is a control-plane election for candidate id, now.
func lead(id string) ebbdriver.LeaderParams {
	return ebbdriver.LeaderParams{Name: controlplane.LeaderName, ID: id, TTL: time.Minute, Now: time.Now()}
}

func TestInspectWorkersJSONEmpty(t *testing.T) {
	url, _ := testBroker(t)
	if out := mustCLI(t, "inspect", "workers", "--json", "--broker", url); out != "[]\n" {
		t.Errorf("inspect workers --json with no workers = %q, want []", out)
	}
}

// TestHelpNamesEveryBrokerScheme: the top-level help lists every broker URL
// form `--broker` accepts.
func TestHelpNamesEveryBrokerScheme(t *testing.T) {
	r := runCLI(t, "help")
	out := r.stdout + r.stderr
	for _, form := range []string{"redis://", "postgres://", "sqlite:"} {
		if !strings.Contains(out, form) {
			t.Errorf("`ebb help` does not name %s URLs:\n%s", form, out)
		}
	}
}
