package httpserver

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// apiCall sends a request as a script would (no Accept: text/html), with
// headers given as name, value pairs, and returns the status, headers and
// body.
func apiCall(t *testing.T, method, url, token string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(body)
}

// jsonError decodes an {"error": "..."} answer, failing the test when the
// answer is anything else.
func jsonError(t *testing.T, what string, h http.Header, body string) string {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json; body %q", what, ct, body)
	}
	var e map[string]string
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || len(e) != 1 || e["error"] == "" {
		t.Errorf("%s: body %q is not {\"error\": \"...\"} (%v)", what, body, err)
	}
	return e["error"]
}

func TestAPIUnknownRoutesAndMethodsAnswerJSON(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	tests := []struct {
		method, path string
		code         int
		allow        []string // methods the Allow header and the message must name
	}{
		{"GET", "/api/v1/nope", http.StatusNotFound, nil},
		{"GET", "/api/v1", http.StatusNotFound, nil},
		{"POST", "/api/v2/queues", http.StatusNotFound, nil},
		{"DELETE", "/api/v1/queues", http.StatusMethodNotAllowed, []string{"GET", "HEAD"}},
		{"POST", "/api/v1/pools", http.StatusMethodNotAllowed, []string{"GET"}},
		{"PUT", "/api/v1/tasks/x", http.StatusMethodNotAllowed, []string{"DELETE", "GET"}},
		{"GET", "/api/v1/tasks/x/retry", http.StatusMethodNotAllowed, []string{"POST"}},
	}
	for _, tt := range tests {
		what := tt.method + " " + tt.path
		code, h, body := apiCall(t, tt.method, f.http.URL+tt.path, "")
		if code != tt.code {
			t.Errorf("%s: %d, want %d", what, code, tt.code)
		}
		msg := jsonError(t, what, h, body)
		if !strings.Contains(msg, tt.path) {
			t.Errorf("%s: message %q does not name the path", what, msg)
		}
		if tt.code != http.StatusMethodNotAllowed {
			continue
		}
		allow := h.Get("Allow")
		for _, m := range tt.allow {
			if !strings.Contains(allow, m) {
				t.Errorf("%s: Allow %q lacks %s", what, allow, m)
			}
			if !strings.Contains(msg, m) {
				t.Errorf("%s: message %q does not name the allowed method %s", what, msg, m)
			}
		}
	}

	// Matched routes still get their path values.
	if code, _, body := apiCall(t, "GET", f.http.URL+"/api/v1/queues/default/dead", ""); code != http.StatusOK {
		t.Errorf("GET /api/v1/queues/default/dead: %d %s", code, body)
	}

	// The dashboard keeps ServeMux's plain answers.
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/nope", http.StatusNotFound},
		{"DELETE", "/workers", http.StatusMethodNotAllowed},
	} {
		code, h, body := apiCall(t, tt.method, f.http.URL+tt.path, "")
		if code != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, code, tt.code)
		}
		if ct := h.Get("Content-Type"); strings.Contains(ct, "json") || strings.HasPrefix(body, "{") {
			t.Errorf("%s %s answered JSON (%q, %q); dashboard paths should not", tt.method, tt.path, ct, body)
		}
		if tt.code == http.StatusMethodNotAllowed && h.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tt.method, tt.path)
		}
	}
}

func TestAPIUnknownRouteNeedsTheTokenFirst(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, testToken, false)
	// Without the token nobody learns which routes exist.
	code, h, body := apiCall(t, "GET", f.http.URL+"/api/v1/nope", "")
	if code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/nope without the token: %d, want 401", code)
	}
	jsonError(t, "401", h, body)
	code, h, body = apiCall(t, "GET", f.http.URL+"/api/v1/nope", testToken)
	if code != http.StatusNotFound {
		t.Errorf("GET /api/v1/nope with the token: %d, want 404", code)
	}
	jsonError(t, "404", h, body)
}

func TestAPICrossOriginRefusalIsJSON(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	code, h, body := apiCall(t, "POST", f.http.URL+"/api/v1/tasks", "", "Sec-Fetch-Site", "cross-site")
	if code != http.StatusForbidden {
		t.Errorf("cross-site POST /api/v1/tasks: %d, want 403", code)
	}
	jsonError(t, "cross-site POST /api/v1/tasks", h, body)
	// A dashboard form keeps the plain answer.
	code, h, _ = apiCall(t, "POST", f.http.URL+"/logout", "", "Sec-Fetch-Site", "cross-site")
	if code != http.StatusForbidden || strings.Contains(h.Get("Content-Type"), "json") {
		t.Errorf("cross-site POST /logout: %d %q, want 403 in plain text", code, h.Get("Content-Type"))
	}
}

// Kinds end up in logs, URLs and the dashboard: one carrying a NUL, a newline
// or spaces is refused at the door with what to use instead, and nothing is
// stored.
func TestAPIEnqueueRefusesInvalidKinds(t *testing.T) {
	t.Parallel()
	f := setupDashboard(t, "", false)
	for _, kind := range []string{"a\x00b", "two words", "line\nbreak", "\u200b" + strings.Repeat("k", 128), "bad\xffutf8"} {
		body, err := json.Marshal(map[string]any{"kind": kind, "args": map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.Post(f.http.URL+"/api/v1/tasks", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("kind %q: %d %s, want 400", kind, res.StatusCode, got)
			continue
		}
		if msg := jsonError(t, "kind "+kind, res.Header, string(got)); !strings.Contains(msg, "control characters or spaces") {
			t.Errorf("kind %q: message %q does not say what a kind may hold", kind, msg)
		}
	}
	if res, err := http.Post(f.http.URL+"/api/v1/tasks", "application/json", strings.NewReader(`{"kind":"reports.build/v2","args":{}}`)); err != nil {
		t.Fatal(err)
	} else if res.Body.Close(); res.StatusCode != http.StatusCreated {
		t.Errorf("a dotted kind with a slash: %d, want 201", res.StatusCode)
	}
}
