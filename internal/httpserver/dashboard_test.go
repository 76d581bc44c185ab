package httpserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/controlplane"
)

const testToken = "dashboard-test-token-0123456789"

type dashFixture struct {
	srv    *Server
	cp     *controlplane.Replica
	http   *httptest.Server
	drv    ebbdriver.Driver
	client *ebb.Client
}

// setupDashboard serves the API and dashboard of a server (not running its
// control loops) on a fresh SQLite broker. listen decides whether the token
// is required.
func setupDashboard(t testing.TB, token string, readOnly bool) *dashFixture {
	t.Helper()
	ctx := context.Background()
	drv, err := ebbsqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	cfg := config.Default()
	cfg.Broker = "sqlite:unused"
	cfg.Server.Token = config.Secret(token)
	cfg.Server.ReadOnly = readOnly
	srv, cp, client := newTestServer(t, cfg, drv)
	hs := httptest.NewServer(srv.routes())
	t.Cleanup(hs.Close)
	return &dashFixture{srv: srv, cp: cp, http: hs, drv: drv, client: client}
}

// newTestServer builds the HTTP surface over a control-plane replica that is
// not running (no leader loops) on drv.
func newTestServer(tb testing.TB, cfg *config.Config, drv ebbdriver.Driver) (*Server, *controlplane.Replica, *ebb.Client) {
	tb.Helper()
	cp, err := controlplane.New(controlplane.Options{Config: cfg, Driver: drv, Executable: "/bin/false"})
	if err != nil {
		tb.Fatal(err)
	}
	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := New(Options{Config: cfg.Server, Client: client, Control: cp})
	if err != nil {
		tb.Fatal(err)
	}
	return srv, cp, client
}

// fill replaces path parameters with harmless values.
var wildcard = regexp.MustCompile(`\{[^}]+\}`)

func TestEveryRouteNeedsTheToken(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, testToken, false)
	if len(f.srv.patterns) < 30 {
		t.Fatalf("only %d routes recorded; the router lost some", len(f.srv.patterns))
	}
	for _, pat := range f.srv.patterns {
		method, path, _ := strings.Cut(pat, " ")
		path = strings.ReplaceAll(wildcard.ReplaceAllString(path, "x"), "{$}", "")
		public := publicPath(path) || strings.HasPrefix(path, "/static/")
		for _, auth := range []string{"", "Bearer wrong-token-0123456789", "Basic " + basic("u", "nope")} {
			req, _ := http.NewRequest(method, f.http.URL+path, strings.NewReader("{}"))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = res.Body.Close()
			if public && res.StatusCode == http.StatusUnauthorized {
				t.Errorf("%s %s is public but answered 401", method, path)
			}
			if !public && res.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with auth %q answered %d, want 401", method, path, auth, res.StatusCode)
			}
		}
	}
	// The token opens them, as bearer or as basic auth's password.
	for _, auth := range []string{"Bearer " + testToken, "Basic " + basic("anyone", testToken)} {
		req, _ := http.NewRequest("GET", f.http.URL+"/api/v1/queues", nil)
		req.Header.Set("Authorization", auth)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET /api/v1/queues with %q: %d, want 200", auth[:6], res.StatusCode)
		}
	}
}

func basic(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// browser is an HTTP client with cookies, like a signed-in dashboard tab.
type browser struct {
	t    *testing.T
	c    *http.Client
	base string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (b *browser) do(method, path string, form url.Values) (int, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out)
}

func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	b.t.Fatalf("no cookie %s", name)
	return ""
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

func (b *browser) csrf(html string) string {
	b.t.Helper()
	m := csrfInput.FindStringSubmatch(html)
	if m == nil {
		b.t.Fatalf("no CSRF field on the page:\n%.400s", html)
	}
	return m[1]
}

func TestDashboardLoginAndCSRF(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, testToken, false)
	ctx := context.Background()
	res, err := f.client.EnqueueRaw(ctx, "sleep", json.RawMessage(`{"ms":1}`), &ebb.EnqueueOpts{Delay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, f.http.URL)

	// A page without a session answers 401 with the sign-in form.
	code, html := b.do("GET", "/tasks/"+res.ID, nil)
	if code != http.StatusUnauthorized || !strings.Contains(html, `name="token"`) {
		t.Fatalf("unauthenticated page: %d, want 401 with the login form", code)
	}
	csrf := b.csrf(html)
	if code, _ := b.do("POST", "/login", url.Values{"csrf": {csrf}, "token": {"wrong-token-000000000"}}); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d, want 401", code)
	}
	if code, _ := b.do("POST", "/login", url.Values{"token": {testToken}}); code != http.StatusForbidden {
		t.Fatalf("login without CSRF: %d, want 403", code)
	}
	if code, _ := b.do("POST", "/login", url.Values{"csrf": {csrf}, "token": {testToken}, "next": {"//evil.example"}}); code != http.StatusSeeOther {
		t.Fatalf("login: %d, want 303", code)
	}
	code, html = b.do("GET", "/tasks/"+res.ID, nil)
	if code != http.StatusOK || !strings.Contains(html, res.ID) {
		t.Fatalf("task page after login: %d", code)
	}
	csrf = b.csrf(html)

	// Actions refuse a missing or wrong CSRF token and leave the task alone.
	for _, form := range []url.Values{{}, {"csrf": {strings.Repeat("0", 64)}}} {
		if code, _ := b.do("POST", "/tasks/"+res.ID+"/cancel", form); code != http.StatusForbidden {
			t.Errorf("cancel with CSRF %q: %d, want 403", form.Get("csrf"), code)
		}
	}
	if task, _ := f.drv.TaskGet(ctx, res.ID); task.State != ebbtype.StateScheduled {
		t.Fatalf("task is %s after refused actions, want scheduled", task.State)
	}
	// A cross-site form post is refused even with the right token in it.
	req, _ := http.NewRequest("POST", f.http.URL+"/tasks/"+res.ID+"/cancel", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r, err := b.c.Do(req); err != nil || r.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site post: %v %v, want 403", r.StatusCode, err)
	}
	if code, _ := b.do("POST", "/tasks/"+res.ID+"/cancel", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("cancel with CSRF: %d, want 303", code)
	}
	if task, _ := f.drv.TaskGet(ctx, res.ID); task.State != ebbtype.StateCancelled {
		t.Fatalf("task is %s, want cancelled", task.State)
	}
	_, html = b.do("GET", "/tasks/"+res.ID, nil)
	if !strings.Contains(html, "cancel done, now cancelled") {
		t.Errorf("no flash message after the action")
	}
}

func TestDashboardEscapesTaskContent(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	ctx := context.Background()
	const evil = `<script>window.pwned=1</script><img src=x onerror="window.pwned=2">`
	args, _ := json.Marshal(map[string]string{"html": evil})
	res, err := f.client.EnqueueRaw(ctx, "x<script>k</script>", args, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, f.http.URL)
	for _, path := range []string{"/tasks/" + res.ID, "/tasks?kind=" + url.QueryEscape("x<script>k</script>"), "/"} {
		code, html := b.do("GET", path, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
		if strings.Contains(html, "<script>window") || strings.Contains(html, "<img src=x") || strings.Contains(html, "<script>k") {
			t.Errorf("GET %s renders task content as markup", path)
		}
	}
	_, html := b.do("GET", "/tasks/"+res.ID, nil)
	if !strings.Contains(html, "&lt;script&gt;window.pwned=1&lt;/script&gt;") {
		t.Errorf("task page does not show the args as text")
	}
	// A missing task is a 404 page, still HTML with the page's headers.
	nf, err := http.Get(f.http.URL + "/tasks/no-such-task")
	if err != nil {
		t.Fatal(err)
	}
	_ = nf.Body.Close()
	if nf.StatusCode != http.StatusNotFound || nf.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("missing task page: %d, Cache-Control %q; want 404 with the page's no-store", nf.StatusCode, nf.Header.Get("Cache-Control"))
	}
}

func TestDashboardReadOnly(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", true)
	ctx := context.Background()
	res, err := f.client.EnqueueRaw(ctx, "sleep", nil, &ebb.EnqueueOpts{Delay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, f.http.URL)
	code, html := b.do("GET", "/tasks/"+res.ID, nil)
	if code != http.StatusOK || strings.Contains(html, "/cancel") || !strings.Contains(html, "read-only") {
		t.Fatalf("read-only task page: %d, shows actions or no badge", code)
	}
	if code, _ := b.do("POST", "/tasks/"+res.ID+"/cancel", url.Values{"csrf": {b.cookie(csrfCookie)}}); code != http.StatusForbidden {
		t.Fatalf("action on a read-only dashboard: %d, want 403", code)
	}
	req, _ := http.NewRequest("POST", f.http.URL+"/api/v1/tasks/"+res.ID+"/cancel", nil)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusForbidden {
		t.Fatalf("API action on a read-only server: %v %v, want 403", r.StatusCode, err)
	}
}

func TestDeadLettersNeedConfirmation(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	ctx := context.Background()
	ids := killTasks(t, f, 3)
	b := newBrowser(t, f.http.URL)
	_, html := b.do("GET", "/queues/default/dead", nil)
	csrf := b.csrf(html)
	for _, id := range ids {
		if !strings.Contains(html, id) {
			t.Fatalf("dead page lacks %s", id)
		}
	}
	// "Retry all" first asks; nothing moves until confirmed.
	code, html := b.do("POST", "/queues/default/dead/retry", url.Values{"csrf": {csrf}, "all": {"yes"}})
	if code != http.StatusOK || !strings.Contains(html, "Retry all 3 dead tasks of queue default?") {
		t.Fatalf("retry all: %d, want a confirmation page:\n%.600s", code, html)
	}
	if _, n, _ := f.drv.DeadList(ctx, ebbdriver.DeadListParams{Queue: "default", Limit: 1}); n != 3 {
		t.Fatalf("%d dead before confirming, want 3", n)
	}
	// Delete one, confirmed.
	if code, _ := b.do("POST", "/queues/default/dead/delete", url.Values{"csrf": {csrf}, "id": {ids[0]}, "confirm": {"yes"}}); code != http.StatusSeeOther {
		t.Fatalf("delete one: %d", code)
	}
	if code, _ := b.do("POST", "/queues/default/dead/retry", url.Values{"csrf": {csrf}, "all": {"yes"}, "confirm": {"yes"}}); code != http.StatusSeeOther {
		t.Fatalf("retry all confirmed: %d", code)
	}
	if _, err := f.drv.TaskGet(ctx, ids[0]); err == nil {
		t.Errorf("deleted dead task still exists")
	}
	for _, id := range ids[1:] {
		if task, err := f.drv.TaskGet(ctx, id); err != nil || task.State != ebbtype.StateQueued {
			t.Errorf("task %s after retry all: %v %v, want queued", id, task, err)
		}
	}
}

// killTasks makes n dead tasks in queue default by running them through a
// worker whose handler refuses to retry.
func killTasks(t *testing.T, f *dashFixture, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for range n {
		res, err := f.client.EnqueueRaw(ctx, "fail", json.RawMessage(`{"message":"<b>boom</b>"}`), &ebb.EnqueueOpts{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	h := ebb.NewHandlers()
	ebb.HandleRaw(h, "fail", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		return nil, ebb.NoRetry(io.ErrUnexpectedEOF)
	})
	w, err := ebb.NewWorker(f.drv, &ebb.WorkerConfig{Handlers: h, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	for _, id := range ids {
		if _, err := f.client.Wait(ctx, id); err == nil {
			t.Fatalf("task %s did not fail", id)
		}
	}
	stop()
	<-done
	return ids
}

func TestPoolPageChartsTheTimeline(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	now := time.Now()
	for i, pt := range []controlplane.Point{{Workers: 0, Queued: 0}, {Queued: 40, Workers: 0, Desired: 2}, {Queued: 10, InFlight: 8, Workers: 2, Busy: 2, Desired: 2}, {Workers: 0}} {
		pt.At = now.Add(time.Duration(i-4) * time.Minute)
		f.cp.RecordPoint("default", pt)
	}
	b := newBrowser(t, f.http.URL)
	code, html := b.do("GET", "/pools/default", nil)
	if code != http.StatusOK {
		t.Fatalf("pool page: %d", code)
	}
	for _, want := range []string{`<svg class="chart"`, `class="queued"`, `class="workers"`, `class="inflight"`, `class="desired"`} {
		if !strings.Contains(html, want) {
			t.Errorf("pool chart lacks %s", want)
		}
	}
	if code, _ := b.do("GET", "/pools/nope", nil); code != http.StatusNotFound {
		t.Errorf("unknown pool: %d, want 404", code)
	}
}

func TestPrettyJSONShowsMarkupCharacters(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`{"a":"\u003cb\u003e \u0026"}`, "{\n  \"a\": \"<b> &\"\n}"},
		{`{"a":"\\u003cb"}`, "{\n  \"a\": \"\\\\u003cb\"\n}"},
		{`"\"\u003C"`, `"\"<"`},
		{`not json <`, `not json <`},
	}
	for _, tt := range tests {
		if got := prettyJSON([]byte(tt.in)); got != tt.want {
			t.Errorf("prettyJSON(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDrainWorkerFromDashboard(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	ctx := context.Background()
	info := ebbtype.WorkerInfo{ID: "w-dash-1", Pool: "default", Host: "h", PID: 42, Queues: []string{"default"},
		Concurrency: 4, StartedAt: time.Now(), HeartbeatAt: time.Now()}
	if _, err := f.drv.WorkerHeartbeat(ctx, info, time.Minute); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, f.http.URL)
	code, html := b.do("GET", "/workers", nil)
	if code != http.StatusOK || !strings.Contains(html, `data-worker="w-dash-1"`) {
		t.Fatalf("workers page: %d, worker not listed", code)
	}
	if code, _ := b.do("POST", "/workers/w-dash-1/drain", url.Values{"csrf": {b.csrf(html)}}); code != http.StatusSeeOther {
		t.Fatalf("drain: %d, want 303", code)
	}
	ctl, err := f.drv.WorkerHeartbeat(ctx, info, time.Minute)
	if err != nil || !ctl.DrainRequested {
		t.Fatalf("after drain from the dashboard the worker's heartbeat says %+v, %v; want drain requested", ctl, err)
	}
	_, html = b.do("GET", "/workers", nil)
	if !strings.Contains(html, "Asked worker w-dash-1 to drain") {
		t.Errorf("no confirmation of the drain")
	}
}

func TestTaskAPI(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	call := func(method, path, body string, into any) int {
		t.Helper()
		req, _ := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if into != nil {
			if err := json.NewDecoder(res.Body).Decode(into); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
		return res.StatusCode
	}
	var created struct {
		ID    string        `json:"id"`
		State ebbtype.State `json:"state"`
	}
	if code := call("POST", "/api/v1/tasks", `{"kind":"report","args":{"n":1},"queue":"reports","delay":"1h"}`, &created); code != http.StatusCreated || created.State != ebbtype.StateScheduled {
		t.Fatalf("enqueue: %d %+v", code, created)
	}
	for _, bad := range []string{`{"args":{}}`, `{"kind":"x","delay":"soon"}`, `{"kind":"x","queue":"no spaces"}`, `{"kind":"x","bogus":1}`, `not json`} {
		var e map[string]string
		if code := call("POST", "/api/v1/tasks", bad, &e); code != http.StatusBadRequest || e["error"] == "" {
			t.Errorf("enqueue %s: %d %v, want 400 with an error", bad, code, e)
		}
	}
	var page ebb.TaskListResult
	if code := call("GET", "/api/v1/tasks?queue=reports&state=scheduled", "", &page); code != http.StatusOK || len(page.Tasks) != 1 || page.Tasks[0].ID != created.ID {
		t.Fatalf("search: %d %+v", code, page)
	}
	if code := call("GET", "/api/v1/tasks?state=bogus", "", nil); code != http.StatusBadRequest {
		t.Errorf("search with a bad state: %d, want 400", code)
	}
	var got ebb.TaskInfo
	if code := call("POST", "/api/v1/tasks/"+created.ID+"/retry", "", &got); code != http.StatusOK || got.State != ebbtype.StateQueued {
		t.Fatalf("retry a scheduled task: %d %+v, want queued", code, got)
	}
	if code := call("POST", "/api/v1/tasks/"+created.ID+"/cancel", "", nil); code != http.StatusOK {
		t.Fatalf("cancel: %d", code)
	}
	if code := call("POST", "/api/v1/tasks/"+created.ID+"/retry", "", nil); code != http.StatusConflict {
		t.Errorf("retry a cancelled task: %d, want 409", code)
	}
	if code := call("DELETE", "/api/v1/tasks/"+created.ID, "", nil); code != http.StatusOK {
		t.Fatalf("delete: %d", code)
	}
	if code := call("GET", "/api/v1/tasks/"+created.ID, "", nil); code != http.StatusNotFound {
		t.Errorf("get a deleted task: %d, want 404", code)
	}
	// Dead letters: an empty id list is refused, "all" must be explicit.
	ids := killTasks(t, f, 2)
	if code := call("POST", "/api/v1/queues/default/dead/retry", `{"ids":[]}`, nil); code != http.StatusBadRequest {
		t.Errorf("dead retry with no ids: %d, want 400", code)
	}
	var n struct{ Count int64 }
	if code := call("POST", "/api/v1/queues/default/dead/delete", `{"ids":["`+ids[0]+`"]}`, &n); code != http.StatusOK || n.Count != 1 {
		t.Errorf("dead delete one: %d %+v", code, n)
	}
	if code := call("POST", "/api/v1/queues/default/dead/retry", `{"all":true}`, &n); code != http.StatusOK || n.Count != 1 {
		t.Errorf("dead retry all: %d %+v", code, n)
	}
	var pts []controlplane.Point
	if code := call("GET", "/api/v1/pools/default/timeline?span=5m", "", &pts); code != http.StatusOK {
		t.Errorf("timeline: %d", code)
	}
	if code := call("GET", "/api/v1/pools/nope/timeline", "", nil); code != http.StatusNotFound {
		t.Errorf("timeline of an unknown pool: %d, want 404", code)
	}
}
