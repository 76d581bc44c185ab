package httpserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPIBodies sends every JSON body the API reads anything a client could
// send. The answer is never a server error, and it is always JSON: a 2xx
// with the resource, or an {"error": …} that says what to send instead.
func FuzzAPIBodies(f *testing.F) {
	routes := []string{
		"POST /api/v1/tasks",
		"POST /api/v1/schedules",
		"POST /api/v1/queues/default/dead/retry",
		"POST /api/v1/queues/default/dead/delete",
		"POST /api/v1/tasks/t1/retry",
		"POST /api/v1/workers/w1/drain",
	}
	for i := range routes {
		f.Add(uint8(i), `{"kind":"sleep","args":{"ms":100}}`)
		f.Add(uint8(i), `{"ids":["a"],"all":true}`)
		f.Add(uint8(i), `{"name":"n","every":"1m","kind":"noop","args":[1]}`)
	}
	f.Add(uint8(0), `{"kind":"k","queue":"q","priority":"high","delay":"1s","max_attempts":-1,"unique_for":"1h"}`)
	f.Add(uint8(0), `{"kind":"k\u0000","args":null}`)
	f.Add(uint8(1), `{"name":"n","cron":"61 * * * *","kind":"x"}`)
	fx := setupDashboard(f, "", false)
	h := fx.srv.routes()
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		method, path, _ := strings.Cut(routes[int(route)%len(routes)], " ")
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		what := method + " " + path + " " + body
		if rec.Code >= 500 {
			t.Fatalf("%s: %d %s", what, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: Content-Type %q, body %q", what, ct, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s: answer is not JSON: %q", what, rec.Body)
		}
		if rec.Code >= 400 {
			var e struct{ Error string }
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Fatalf("%s: %d without an error message: %q", what, rec.Code, rec.Body)
			}
		}
		if rec.Code == http.StatusCreated && path == "/api/v1/tasks" {
			var task struct{ ID, State string }
			if json.Unmarshal(rec.Body.Bytes(), &task) != nil || task.ID == "" || task.State == "" {
				t.Fatalf("%s: created without an id and state: %q", what, rec.Body)
			}
		}
	})
}
