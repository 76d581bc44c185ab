package ecs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/ebbq/ebb/internal/target"
)

const (
	testCluster = "ebb-test"
	testService = "workers"
	testRegion  = "eu-west-1"
	targetHdr   = "AmazonEC2ContainerServiceV20141113."
	jsonType    = "application/x-amz-json-1.1"
)

// fakeTask is a task as ECS describes it.
type fakeTask struct {
	id            string
	lastStatus    string
	desiredStatus string
	createdAt     time.Time
	startedAt     time.Time // zero until it runs
}

// fakeECS answers the four operations the target uses the way ECS does over
// its JSON 1.1 protocol, through the real SDK client.
type fakeECS struct {
	t  *testing.T
	mu sync.Mutex

	missing   bool   // DescribeServices reports the service MISSING
	status    string // the service's status; "" is ACTIVE
	desired   int32
	tasks     []fakeTask
	pageSize  int                 // ListTasks page size; 0 is 100
	errs      map[string][]string // op → error codes to answer with, one per request, before succeeding
	hang      bool                // every request waits until the client gives up
	calls     map[string]int
	updates   []int32
	described [][]string // the task ARNs of each DescribeTasks
}

func newFake(t *testing.T) (*fakeECS, *httptest.Server) {
	f := &fakeECS{t: t, errs: map[string][]string{}, calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv
}

func taskARN(id string) string {
	return "arn:aws:ecs:" + testRegion + ":123456789012:task/" + testCluster + "/" + id
}

func (f *fakeECS) serve(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetHdr)
	if r.Method != http.MethodPost || !ok || r.Header.Get("Content-Type") != jsonType {
		f.t.Errorf("request %s %s target %q content type %q, want POST %s…, %s",
			r.Method, r.URL, r.Header.Get("X-Amz-Target"), r.Header.Get("Content-Type"), targetHdr, jsonType)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	// The SDK signed it with the static credentials, for this region.
	if auth := r.Header.Get("Authorization"); !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") ||
		!strings.Contains(auth, "/"+testRegion+"/ecs/aws4_request") {
		f.t.Errorf("%s: Authorization = %q, want SigV4 with the test key for ecs in %s", op, auth, testRegion)
	}
	var in struct {
		Cluster       string   `json:"cluster"`
		Services      []string `json:"services"`
		Service       string   `json:"service"`
		ServiceName   string   `json:"serviceName"`
		DesiredStatus string   `json:"desiredStatus"`
		DesiredCount  *int32   `json:"desiredCount"`
		NextToken     string   `json:"nextToken"`
		Tasks         []string `json:"tasks"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		f.t.Errorf("%s: body: %v", op, err)
	}
	if in.Cluster != testCluster {
		f.t.Errorf("%s: cluster = %q, want %q", op, in.Cluster, testCluster)
	}

	f.mu.Lock()
	f.calls[op]++
	hang := f.hang
	var code string
	if codes := f.errs[op]; len(codes) > 0 {
		code, f.errs[op] = codes[0], codes[1:]
	}
	f.mu.Unlock()
	if hang {
		<-r.Context().Done()
		return
	}
	if code != "" {
		w.Header().Set("Content-Type", jsonType)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":%q,"message":"fake %s"}`, code, code)
		return
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	var out any
	switch op {
	case "DescribeServices":
		if !slices.Equal(in.Services, []string{testService}) {
			f.t.Errorf("DescribeServices: services = %q", in.Services)
		}
		if f.missing {
			out = map[string]any{"services": []any{}, "failures": []any{map[string]any{
				"arn": "arn:aws:ecs:" + testRegion + ":123456789012:service/" + testCluster + "/" + testService, "reason": "MISSING"}}}
			break
		}
		out = map[string]any{"services": []any{f.serviceLocked()}, "failures": []any{}}
	case "ListTasks":
		if in.ServiceName != testService || in.DesiredStatus != "RUNNING" {
			f.t.Errorf("ListTasks: serviceName %q desiredStatus %q, want %q RUNNING", in.ServiceName, in.DesiredStatus, testService)
		}
		size := f.pageSize
		if size == 0 {
			size = 100
		}
		start := 0
		if in.NextToken != "" {
			fmt.Sscanf(in.NextToken, "page-%d", &start)
		}
		end := min(start+size, len(f.tasks))
		arns := []string{}
		for _, tk := range f.tasks[start:end] {
			arns = append(arns, taskARN(tk.id))
		}
		page := map[string]any{"taskArns": arns}
		if end < len(f.tasks) {
			page["nextToken"] = fmt.Sprintf("page-%d", end)
		}
		out = page
	case "DescribeTasks":
		if len(in.Tasks) > 100 {
			f.t.Errorf("DescribeTasks with %d tasks; ECS takes at most 100", len(in.Tasks))
		}
		f.described = append(f.described, in.Tasks)
		tasks := []any{}
		failures := []any{}
		for _, a := range in.Tasks {
			i := slices.IndexFunc(f.tasks, func(tk fakeTask) bool { return taskARN(tk.id) == a })
			if i < 0 {
				failures = append(failures, map[string]any{"arn": a, "reason": "MISSING"})
				continue
			}
			tk := f.tasks[i]
			m := map[string]any{"taskArn": a, "lastStatus": tk.lastStatus, "desiredStatus": cmpStr(tk.desiredStatus, "RUNNING"),
				"createdAt": epoch(tk.createdAt)}
			if !tk.startedAt.IsZero() {
				m["startedAt"] = epoch(tk.startedAt)
			}
			tasks = append(tasks, m)
		}
		out = map[string]any{"tasks": tasks, "failures": failures}
	case "UpdateService":
		if in.Service != testService || in.DesiredCount == nil {
			f.t.Errorf("UpdateService: service %q desiredCount %v", in.Service, in.DesiredCount)
			break
		}
		f.desired = *in.DesiredCount
		f.updates = append(f.updates, f.desired)
		out = map[string]any{"service": f.serviceLocked()}
	default:
		f.t.Errorf("unexpected operation %q", op)
	}
	w.Header().Set("Content-Type", jsonType)
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeECS) serviceLocked() map[string]any {
	var running, pending int
	for _, tk := range f.tasks {
		switch tk.lastStatus {
		case "RUNNING":
			running++
		case "PENDING", "PROVISIONING", "ACTIVATING":
			pending++
		}
	}
	return map[string]any{
		"serviceName": testService, "serviceArn": "arn:aws:ecs:" + testRegion + ":123456789012:service/" + testCluster + "/" + testService,
		"status": cmpStr(f.status, "ACTIVE"), "desiredCount": f.desired, "runningCount": running, "pendingCount": pending,
	}
}

func cmpStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func (f *fakeECS) set(fn func(f *fakeECS)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeECS) get() (desired int32, updates []int32, calls map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := map[string]int{}
	for k, v := range f.calls {
		c[k] = v
	}
	return f.desired, slices.Clone(f.updates), c
}

func running(ids ...string) []fakeTask {
	var out []fakeTask
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i, id := range ids {
		s := at.Add(time.Duration(i) * time.Second)
		out = append(out, fakeTask{id: id, lastStatus: "RUNNING", createdAt: s.Add(-10 * time.Second), startedAt: s})
	}
	return out
}

func testConfig(srv *httptest.Server) Config {
	return Config{
		Cluster: testCluster, Service: testService, Region: testRegion, Endpoint: srv.URL,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		CallTimeout: 5 * time.Second, MaxBackoff: 20 * time.Millisecond,
	}
}

func newTarget(t *testing.T, srv *httptest.Server, edit ...func(*Config)) *Target {
	t.Helper()
	cfg := testConfig(srv)
	for _, e := range edit {
		e(&cfg)
	}
	tg, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// listing is what Instances reports, as ids.
func listing(t *testing.T, tg *Target) string {
	t.Helper()
	got, err := tg.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids(got)
}

func ids(ins []target.Instance) string {
	var s []string
	for _, in := range ins {
		s = append(s, in.ID+"="+string(in.State))
	}
	return strings.Join(s, " ")
}

func TestNewChecksConfigWithoutCallingAWS(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	tg := newTarget(t, srv)
	if tg.Name() != "ecs" {
		t.Errorf("Name() = %q", tg.Name())
	}
	ctx := context.Background()
	if err := tg.Protect(ctx, []string{"a"}); err != nil {
		t.Errorf("Protect = %v", err)
	}
	if err := tg.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if ids, err := tg.Launch(ctx, 0); err != nil || ids != nil {
		t.Errorf("Launch(0) = %v, %v", ids, err)
	}
	if err := tg.Retire(ctx, nil); err != nil {
		t.Errorf("Retire(nil) = %v", err)
	}
	if _, _, calls := f.get(); len(calls) != 0 {
		t.Errorf("New, Protect, Shutdown and empty requests called ECS: %v", calls)
	}
	if s := tg.Status(); !strings.Contains(s, "not read yet") || tg.LastError() != nil {
		t.Errorf("Status() = %q, LastError() = %v before any call", s, tg.LastError())
	}

	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no cluster", func(c *Config) { c.Cluster = "" }, "cluster is required"},
		{"no service", func(c *Config) { c.Service = "" }, "service is required"},
		{"space in service", func(c *Config) { c.Service = "my service" }, `service "my service" contains spaces`},
		{"endpoint not a URL", func(c *Config) { c.Endpoint = "ecs.local:443" }, `endpoint "ecs.local:443" is not an http(s) URL`},
		{"not a service ARN", func(c *Config) { c.Service = "arn:aws:ecs:eu-west-1:1:cluster/x" }, "is not an ECS service ARN"},
		{"ARN in another region", func(c *Config) { c.Service = "arn:aws:ecs:us-east-1:1:service/" + testCluster + "/w" }, "service ARN is in region us-east-1, not eu-west-1"},
		{"ARN in another cluster", func(c *Config) { c.Service = "arn:aws:ecs:eu-west-1:1:service/other/w" }, "service ARN is in cluster other, not ebb-test"},
		{"negative timeout", func(c *Config) { c.CallTimeout = -1 }, "cannot be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(srv)
			tc.edit(&cfg)
			_, err := New(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want %q", err, tc.want)
			}
		})
	}
	// ARNs that agree with the cluster, and the older ARN without one.
	for _, svc := range []string{"arn:aws:ecs:eu-west-1:1:service/" + testCluster + "/w", "arn:aws:ecs:eu-west-1:1:service/w"} {
		cfg := testConfig(srv)
		cfg.Service, cfg.Cluster = svc, "arn:aws:ecs:eu-west-1:1:cluster/"+testCluster
		if _, err := New(ctx, cfg); err != nil {
			t.Errorf("New with service %s: %v", svc, err)
		}
	}
}

// TestNewNeedsARegion runs alone: it clears the variables and files the SDK
// reads a region from.
func TestNewNeedsARegion(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	_, srv := newFake(t)
	cfg := testConfig(srv)
	cfg.Region = ""
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "no region") {
		t.Errorf("New without a region = %v", err)
	}
	t.Setenv("AWS_REGION", testRegion)
	tg, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Instances(context.Background()); err != nil {
		t.Errorf("Instances with the region from AWS_REGION: %v", err)
	}
}

func TestLaunchRaisesDesired(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	f.set(func(f *fakeECS) { f.desired, f.tasks = 1, running("a") })
	tg := newTarget(t, srv)
	ctx := context.Background()
	got, err := tg.Launch(ctx, 2)
	if err != nil || got != nil {
		t.Fatalf("Launch(2) = %v, %v; want no ids", got, err)
	}
	if _, err := tg.Launch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	desired, updates, calls := f.get()
	if desired != 4 || !slices.Equal(updates, []int32{3, 4}) {
		t.Errorf("desired %d after updates %v, want 3 then 4", desired, updates)
	}
	if calls["DescribeServices"] != 2 || calls["UpdateService"] != 2 || calls["ListTasks"] != 0 {
		t.Errorf("calls = %v, want one DescribeServices and one UpdateService per Launch", calls)
	}
	if s := tg.Status(); !strings.Contains(s, "desired 4") {
		t.Errorf("Status() = %q, want the desired count it set", s)
	}
}

func TestInstancesMapsTasksAndPlaceholders(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	created := time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC)
	started := created.Add(20 * time.Second)
	f.set(func(f *fakeECS) {
		f.desired = 7
		f.pageSize = 2 // three pages
		f.tasks = []fakeTask{
			{id: "run", lastStatus: "RUNNING", createdAt: created, startedAt: started},
			{id: "prov", lastStatus: "PROVISIONING", createdAt: created.Add(time.Second)},
			{id: "pend", lastStatus: "PENDING", createdAt: created.Add(2 * time.Second)},
			{id: "act", lastStatus: "ACTIVATING", createdAt: created.Add(3 * time.Second)},
			{id: "deact", lastStatus: "DEACTIVATING", createdAt: created.Add(4 * time.Second), startedAt: started},
			{id: "told", lastStatus: "RUNNING", desiredStatus: "STOPPED", createdAt: created.Add(5 * time.Second), startedAt: started.Add(time.Second)},
		}
	})
	tg := newTarget(t, srv)
	ctx := context.Background()
	before := time.Now()
	if _, err := tg.Launch(ctx, 0); err != nil {
		t.Fatal(err)
	}
	got, err := tg.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Four tasks fill the desired count of 7; three more are placeholders.
	// Ordered by start (createdAt until the task runs), then id.
	want := "prov=starting pend=starting act=starting deact=stopping run=running told=stopping " +
		"ecs-pending-1=starting ecs-pending-2=starting ecs-pending-3=starting"
	if ids(got) != want {
		t.Errorf("Instances =\n%s\nwant\n%s", ids(got), want)
	}
	byID := map[string]target.Instance{}
	for _, in := range got {
		byID[in.ID] = in
	}
	if !byID["run"].StartedAt.Equal(started) || !byID["prov"].StartedAt.Equal(created.Add(time.Second)) {
		t.Errorf("StartedAt: run %v (want startedAt %v), prov %v (want createdAt)", byID["run"].StartedAt, started, byID["prov"].StartedAt)
	}
	_, _, calls := f.get()
	if calls["DescribeServices"] != 1 || calls["ListTasks"] != 3 || calls["DescribeTasks"] != 1 {
		t.Errorf("calls = %v, want one DescribeServices, three ListTasks pages, one DescribeTasks", calls)
	}
	if s := tg.Status(); !strings.Contains(s, "desired 7, running 2, pending 3") {
		t.Errorf("Status() = %q", s)
	}

	// Placeholders carry the time of the last Launch.
	if _, err := tg.Launch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got, err = tg.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := got[len(got)-1]
	if last.ID != "ecs-pending-4" || last.StartedAt.Before(before) {
		t.Errorf("last instance = %+v, want ecs-pending-4 launched after %v", last, before)
	}

	// More tasks than DescribeTasks takes at once, and fewer than desired:
	// no placeholders.
	f.set(func(f *fakeECS) {
		f.pageSize, f.desired, f.tasks, f.described = 0, 200, nil, nil
		for i := range 230 {
			f.tasks = append(f.tasks, running(fmt.Sprintf("t%03d", i))...)
		}
	})
	got, err = tg.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 230 || strings.Contains(ids(got), pendingPrefix) {
		t.Errorf("got %d instances (%s…), want the 230 tasks and no placeholder", len(got), ids(got[:3]))
	}
	f.mu.Lock()
	var sizes []int
	for _, d := range f.described {
		sizes = append(sizes, len(d))
	}
	f.mu.Unlock()
	if !slices.Equal(sizes, []int{100, 100, 30}) {
		t.Errorf("DescribeTasks batch sizes = %v, want 100, 100, 30", sizes)
	}
}

func TestRetireLowersOncePerNewID(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	f.set(func(f *fakeECS) { f.desired, f.tasks = 4, running("a", "b", "c", "d") })
	tg := newTarget(t, srv)
	ctx := context.Background()
	step := func(what string, ids []string, wantDesired int32, wantUpdates int) {
		t.Helper()
		if err := tg.Retire(ctx, ids); err != nil {
			t.Fatalf("%s: Retire(%v) = %v", what, ids, err)
		}
		desired, updates, _ := f.get()
		if desired != wantDesired || len(updates) != wantUpdates {
			t.Fatalf("%s: desired %d after updates %v, want %d after %d updates", what, desired, updates, wantDesired, wantUpdates)
		}
	}
	step("one id", []string{"a"}, 3, 1)
	step("the same id again", []string{"a"}, 3, 1)
	step("an old and a new id, repeated", []string{"a", "b", "b"}, 2, 2)
	step("an id that is no task of the service", []string{"nope", "ecs-pending-1"}, 2, 2)

	got, err := tg.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a=stopping b=stopping c=running d=running"; ids(got) != want {
		t.Errorf("Instances = %s, want %s: retired tasks are on their way out", ids(got), want)
	}

	// ECS stops a; its registry entry may outlive it, and retiring it again
	// must not lower the count for a task that is gone.
	f.set(func(f *fakeECS) { f.tasks = running("b", "c", "d") })
	if _, err := tg.Instances(ctx); err != nil {
		t.Fatal(err)
	}
	step("a stopped task", []string{"a"}, 2, 2)

	// Never below zero: two new ids with a count of 1 go to 0, and one more
	// with the count at 0 needs no update.
	f.set(func(f *fakeECS) { f.desired = 1 })
	step("two ids, count 1", []string{"c", "d"}, 0, 3)
	f.set(func(f *fakeECS) { f.tasks = append(f.tasks, running("e")...) })
	step("count already 0", []string{"e"}, 0, 3)
	if s := tg.Status(); !strings.Contains(s, "retired 4") {
		t.Errorf("Status() = %q, want the 4 retired tasks still listed (b, c, d, e)", s)
	}
}

func TestRetiredTaskThatECSKeepsCanBeRetiredAgain(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	f.set(func(f *fakeECS) { f.desired, f.tasks = 3, running("a", "b", "c") })
	tg := newTarget(t, srv)
	var mu sync.Mutex
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tg.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx := context.Background()
	instances := func() string { t.Helper(); return listing(t, tg) }

	if err := tg.Retire(ctx, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	// Someone raises the count before ECS acts, so ECS keeps c. While
	// reads may predate the update, c stays retired.
	f.set(func(f *fakeECS) { f.desired = 3 })
	advance(30 * time.Second)
	if got, want := instances(), "a=running b=running c=stopping ecs-pending-1=starting"; got != want {
		t.Errorf("within the grace: %s, want %s", got, want)
	}
	advance(31 * time.Second)
	if got, want := instances(), "a=running b=running c=running"; got != want {
		t.Errorf("after the grace: %s, want %s", got, want)
	}
	if err := tg.Retire(ctx, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	if desired, updates, _ := f.get(); desired != 2 || len(updates) != 2 {
		t.Errorf("desired %d after %v, want c retired a second time", desired, updates)
	}

	// While ECS still has a task too many, a retired task stays retired
	// however long ECS takes (scale-in protection may hold it back).
	advance(10 * time.Minute)
	if got, want := instances(), "a=running b=running c=stopping"; got != want {
		t.Errorf("with an excess task: %s, want %s", got, want)
	}

	// A Launch that raises the count forgets retired tasks at once, and
	// counts them on top of the new ones: c is drained and takes no work, so
	// raising by one alone would let ECS keep c and start nothing.
	if _, err := tg.Launch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := instances(), "a=running b=running c=running ecs-pending-1=starting"; got != want {
		t.Errorf("after Launch: %s, want %s", got, want)
	}
	if desired, _, _ := f.get(); desired != 4 {
		t.Errorf("desired %d after Launch(1) with c retired but running, want 4 (a, b, c and one new)", desired)
	}
}

// A drained worker drops its own scale-in protection, so when the count goes
// down ECS may stop a drained task that was not retired yet in place of one
// that was. The retired task it keeps must be retirable again on the next
// pass, not a grace period later: the pool would otherwise sit a task above
// its goal for a minute.
func TestRetiredTaskThatECSSkippedForAnotherIsRetiredAgainAtOnce(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	f.set(func(f *fakeECS) { f.desired, f.tasks = 4, running("a", "b", "c", "d") })
	tg := newTarget(t, srv)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tg.now = func() time.Time { return now } // the grace never passes
	ctx := context.Background()
	instances := func() string { t.Helper(); return listing(t, tg) }

	if got, want := instances(), "a=running b=running c=running d=running"; got != want {
		t.Fatalf("before: %s, want %s", got, want)
	}
	if err := tg.Retire(ctx, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	// ECS stops a, which was retired: b is still on its way out.
	f.set(func(f *fakeECS) { f.tasks = running("b", "c", "d") })
	if got, want := instances(), "b=stopping c=running d=running"; got != want {
		t.Errorf("ECS stopped one of two retired tasks: %s, want %s", got, want)
	}
	// ECS stops c, drained but never retired, instead of b.
	f.set(func(f *fakeECS) { f.tasks = running("b", "d") })
	if got, want := instances(), "b=running d=running"; got != want {
		t.Errorf("ECS stopped c in place of b: %s, want %s", got, want)
	}
	if err := tg.Retire(ctx, []string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	if desired, updates, _ := f.get(); desired != 1 || !slices.Equal(updates, []int32{2, 1}) {
		t.Errorf("desired %d after %v, want b retired a second time (2, then 1) and c, gone, ignored", desired, updates)
	}

	// A retired task that ECS stops is no such task: when the count is
	// raised meanwhile (by hand, say), the other retired task stays retired
	// for the grace, as reads may predate the lowering.
	f3, srv3 := newFake(t)
	f3.set(func(f *fakeECS) { f.desired, f.tasks = 3, running("a", "b", "c") })
	tg3 := newTarget(t, srv3)
	tg3.now = tg.now
	if _, err := tg3.Instances(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tg3.Retire(ctx, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	f3.set(func(f *fakeECS) { f.desired, f.tasks = 2, running("b", "c") })
	if got, want := listing(t, tg3), "b=stopping c=running ecs-pending-1=starting"; got != want {
		t.Errorf("a, retired, stopped and the count raised: %s, want %s: b still stopping", got, want)
	}

	// A task that stops frees retired ones only beyond what ECS still owes:
	// with the count at 2 and five tasks, ECS will stop two more, and the
	// three retired tasks keep one too many.
	f2, srv2 := newFake(t)
	f2.set(func(f *fakeECS) { f.desired, f.tasks = 5, running("a", "b", "c", "d", "e") })
	tg2 := newTarget(t, srv2)
	tg2.now = tg.now
	if _, err := tg2.Instances(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tg2.Retire(ctx, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	f2.set(func(f *fakeECS) { f.tasks = running("a", "b", "c", "e") }) // d crashed
	if got, want := listing(t, tg2), "a=running b=stopping c=stopping e=running"; got != want {
		t.Errorf("d stopped with three retired tasks and two stops owed: %s, want %s", got, want)
	}
}

func TestThrottlingIsRetried(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	f.set(func(f *fakeECS) {
		f.desired, f.tasks = 1, running("a")
		f.errs["DescribeServices"] = []string{"ThrottlingException", "ThrottlingException"}
		f.errs["UpdateService"] = []string{"ThrottlingException"}
	})
	tg := newTarget(t, srv)
	ctx := context.Background()
	start := time.Now()
	if _, err := tg.Launch(ctx, 1); err != nil {
		t.Fatalf("Launch through two throttled DescribeServices and a throttled UpdateService: %v", err)
	}
	// Backoffs are capped at 20 ms here.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Launch took %v", d)
	}
	desired, _, calls := f.get()
	if desired != 2 || calls["DescribeServices"] != 3 || calls["UpdateService"] != 2 {
		t.Errorf("desired %d, calls %v; want 2 after 3 DescribeServices and 2 UpdateService", desired, calls)
	}
	if err := tg.LastError(); err != nil {
		t.Errorf("LastError() = %v after the retries succeeded", err)
	}

	// Throttled past MaxAttempts: the error names the operation and the
	// service, and the API error is in its chain.
	f.set(func(f *fakeECS) {
		f.errs["DescribeServices"] = slices.Repeat([]string{"ThrottlingException"}, 10)
		f.calls = map[string]int{}
	})
	tg3 := newTarget(t, srv, func(c *Config) { c.MaxAttempts = 3 })
	_, err := tg3.Instances(ctx)
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "ThrottlingException" {
		t.Fatalf("err = %v, want a smithy.APIError ThrottlingException", err)
	}
	for _, want := range []string{"DescribeServices", testService, testCluster} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to name %s", err, want)
		}
	}
	if _, _, calls := f.get(); calls["DescribeServices"] != 3 {
		t.Errorf("%d attempts, want MaxAttempts 3", calls["DescribeServices"])
	}
	if !errors.Is(tg3.LastError(), err) || !strings.Contains(tg3.Status(), "DescribeServices failing since") {
		t.Errorf("LastError() = %v, Status() = %q; want the throttling error", tg3.LastError(), tg3.Status())
	}
	f.set(func(f *fakeECS) { f.errs = map[string][]string{} })
	if _, err := tg3.Instances(ctx); err != nil {
		t.Fatal(err)
	}
	if tg3.LastError() != nil || strings.Contains(tg3.Status(), "failing") {
		t.Errorf("after a success: LastError() = %v, Status() = %q", tg3.LastError(), tg3.Status())
	}

	// A failing write is not hidden by reads that work.
	f.set(func(f *fakeECS) { f.errs["UpdateService"] = []string{"AccessDeniedException"} })
	if _, err := tg3.Launch(ctx, 1); !errors.As(err, &api) || api.ErrorCode() != "AccessDeniedException" {
		t.Fatalf("Launch = %v, want AccessDeniedException", err)
	}
	if _, err := tg3.Instances(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tg3.LastError(); err == nil || !strings.Contains(err.Error(), "UpdateService") {
		t.Errorf("LastError() = %v, want the UpdateService failure", err)
	}
}

func TestMissingServiceIsAClearError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		setup    func(f *fakeECS)
		call     func(tg *Target) error
		want     string
		wantCode string // the API error in the chain, if any
	}{
		{"DescribeServices reports it MISSING", func(f *fakeECS) { f.missing = true },
			func(tg *Target) error { _, err := tg.Instances(ctx); return err },
			"service workers does not exist in cluster ebb-test (region eu-west-1)", ""},
		{"service INACTIVE", func(f *fakeECS) { f.status = "INACTIVE" },
			func(tg *Target) error { _, err := tg.Launch(ctx, 1); return err },
			"service workers in cluster ebb-test (region eu-west-1) is INACTIVE, not ACTIVE", ""},
		{"service DRAINING", func(f *fakeECS) { f.status = "DRAINING" },
			func(tg *Target) error { _, err := tg.Instances(ctx); return err },
			"is DRAINING, not ACTIVE", ""},
		{"UpdateService: ServiceNotFoundException", func(f *fakeECS) { f.errs["UpdateService"] = []string{"ServiceNotFoundException"} },
			func(tg *Target) error { _, err := tg.Launch(ctx, 1); return err },
			"service workers in cluster ebb-test (region eu-west-1) does not exist or is not active", "ServiceNotFoundException"},
		{"ClusterNotFoundException", func(f *fakeECS) { f.errs["DescribeServices"] = []string{"ClusterNotFoundException"} },
			func(tg *Target) error { return tg.Retire(ctx, []string{"a"}) },
			"cluster ebb-test does not exist in region eu-west-1", "ClusterNotFoundException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := newFake(t)
			f.set(func(f *fakeECS) { f.desired, f.tasks = 1, running("a") })
			f.set(tc.setup)
			tg := newTarget(t, srv)
			err := tc.call(tg)
			if !errors.Is(err, ErrServiceNotFound) {
				t.Fatalf("err = %v, want ErrServiceNotFound", err)
			}
			for _, want := range []string{tc.want, "create it", "ecs.cluster, ecs.service and ecs.region"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %q\nwant it to say %q", err, want)
				}
			}
			var api smithy.APIError
			if tc.wantCode != "" && (!errors.As(err, &api) || api.ErrorCode() != tc.wantCode) {
				t.Errorf("err = %v, want the API error %s in its chain", err, tc.wantCode)
			}
			if !errors.Is(tg.LastError(), ErrServiceNotFound) || !strings.Contains(tg.Status(), "create it") {
				t.Errorf("LastError() = %v, Status() = %q", tg.LastError(), tg.Status())
			}
			if _, updates, _ := f.get(); len(updates) != 0 {
				t.Errorf("updates %v for a missing service", updates)
			}
		})
	}
}

func TestCancellationAndTimeoutReturnPromptly(t *testing.T) {
	t.Parallel()
	f, srv := newFake(t)
	f.set(func(f *fakeECS) { f.hang = true })

	tg := newTarget(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := tg.Instances(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Instances took %v after its context was cancelled", d)
	}
	if err := tg.LastError(); err != nil {
		t.Errorf("LastError() = %v: the caller giving up is not an ECS failure", err)
	}

	// A hung API is cut off by the call timeout, and that is reported.
	tg = newTarget(t, srv, func(c *Config) { c.CallTimeout = 100 * time.Millisecond })
	start = time.Now()
	_, err = tg.Launch(context.Background(), 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Launch took %v with a 100ms call timeout", d)
	}
	if tg.LastError() == nil {
		t.Error("LastError() = nil after a call timed out")
	}
}

func TestTaskState(t *testing.T) {
	t.Parallel()
	for last, want := range map[string]target.State{
		"PROVISIONING": target.StateStarting, "PENDING": target.StateStarting, "ACTIVATING": target.StateStarting,
		"RUNNING":      target.StateRunning,
		"DEACTIVATING": target.StateStopping, "STOPPING": target.StateStopping, "DEPROVISIONING": target.StateStopping,
		"STOPPED": target.StateStopping, "SOMETHING_NEW": target.StateStarting,
	} {
		tk := fakeTaskType(last, "RUNNING")
		if got := taskState(tk); got != want {
			t.Errorf("lastStatus %s: %s, want %s", last, got, want)
		}
	}
	if got := taskState(fakeTaskType("PENDING", "STOPPED")); got != target.StateStopping {
		t.Errorf("desiredStatus STOPPED: %s, want stopping", got)
	}
	for arn, want := range map[string]string{
		"arn:aws:ecs:eu-west-1:1:task/cluster/0123abcd": "0123abcd",
		"arn:aws:ecs:eu-west-1:1:task/0123abcd":         "0123abcd",
		"plain":                                         "plain",
	} {
		if got := taskID(arn); got != want {
			t.Errorf("taskID(%q) = %q, want %q", arn, got, want)
		}
	}
}

func fakeTaskType(last, desired string) types.Task {
	return types.Task{LastStatus: aws.String(last), DesiredStatus: aws.String(desired)}
}
