package httpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
)

// QueueJSON is one queue in GET /api/v1/queues (and `ebb inspect queues
// --json`): a documented interface, so fields are only ever added.
type QueueJSON struct {
	Name           string  `json:"name"`
	Queued         int64   `json:"queued"`
	Scheduled      int64   `json:"scheduled"`
	DueScheduled   int64   `json:"due_scheduled"`
	InFlight       int64   `json:"in_flight"`
	Dead           int64   `json:"dead"`
	Enqueued       int64   `json:"enqueued"`
	Succeeded      int64   `json:"succeeded"`
	Failed         int64   `json:"failed"`
	Retried        int64   `json:"retried"`
	OldestAgeS     float64 `json:"oldest_age_s"`
	ArrivalPerS    float64 `json:"arrival_per_s"`
	CompletionPerS float64 `json:"completion_per_s"`
	// Kind is "celery" for a Celery pool's Kombu queue, "" for ebb's.
	Kind string `json:"kind,omitempty"`
}

// QueuesJSON converts broker counts to the API shape; rates may be nil.
func QueuesJSON(stats []ebbtype.QueueStats, now time.Time, rates func(string) (float64, float64)) []QueueJSON {
	out := make([]QueueJSON, len(stats))
	for i, s := range stats {
		out[i] = QueueJSON{Name: s.Name, Queued: s.Queued, Scheduled: s.Scheduled, DueScheduled: s.DueScheduled,
			InFlight: s.InFlight, Dead: s.Dead, Enqueued: s.Enqueued, Succeeded: s.Succeeded, Failed: s.Failed, Retried: s.Retried}
		if !s.OldestQueuedAt.IsZero() {
			out[i].OldestAgeS = max(0, now.Sub(s.OldestQueuedAt).Seconds())
		}
		if rates != nil {
			out[i].ArrivalPerS, out[i].CompletionPerS = rates(s.Name)
		}
	}
	return out
}

func (s *Server) routes() http.Handler {
	mux := &router{ServeMux: http.NewServeMux()}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/v1/queues", s.handleQueues)
	mux.HandleFunc("GET /api/v1/pools", s.handlePools)
	mux.HandleFunc("GET /api/v1/workers", s.handleWorkers)
	mux.HandleFunc("GET /api/v1/scaling", s.handleScaling)
	mux.HandleFunc("GET /api/v1/leader", s.handleLeader)
	s.scheduleRoutes(mux)
	s.taskRoutes(mux)
	s.celeryRoutes(mux)
	s.dashboardRoutes(mux)
	// Browsers attach cookies and basic auth to cross-site requests; refusing
	// unsafe cross-origin requests (Sec-Fetch-Site, Origin) keeps another
	// site from driving the API through a signed-in dashboard, and from
	// reaching a loopback server that needs no token at all.
	cop := http.NewCrossOriginProtection()
	s.patterns = mux.patterns
	return securityHeaders(crossOrigin(cop, s.authorize(mux)))
}

// crossOrigin is cop.Handler, but refuses API requests in JSON like every
// other API error; the dashboard keeps cop's plain-text answer.
func crossOrigin(cop *http.CrossOriginProtection, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := cop.Check(r)
		switch {
		case err == nil:
			next.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/"):
			writeError(w, http.StatusForbidden, err.Error()+": the API takes changes from scripts and from this server's own pages, not from other sites")
		default:
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	})
}

// queryLimit reads ?limit=, def when absent, refusing anything outside 1..most.
func queryLimit(r *http.Request, def, most int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, fmt.Errorf("limit must be a number from 1 to %d", most)
	}
	return n, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if !s.cp.Ready() {
		writeError(w, http.StatusServiceUnavailable, "starting or stopping")
		return
	}
	if _, err := s.cp.QueueStats(ctx, time.Second); err != nil {
		writeError(w, http.StatusServiceUnavailable, "broker unreachable: "+err.Error())
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) handleQueues(w http.ResponseWriter, r *http.Request) {
	stats, err := s.cp.QueueStats(r.Context(), 500*time.Millisecond)
	if err != nil {
		writeError(w, http.StatusBadGateway, "broker: "+err.Error())
		return
	}
	out := QueuesJSON(stats, time.Now(), s.cp.Rates)
	cq, err := s.celeryQueues(r.Context(), time.Now(), 500*time.Millisecond)
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, append(out, cq...))
}

func (s *Server) handlePools(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.cp.Pools())
}

func (s *Server) handleWorkers(w http.ResponseWriter, r *http.Request) {
	ws, err := s.client.WorkerList(r.Context())
	writeAnswer(w, ws, err)
}

func (s *Server) handleScaling(w http.ResponseWriter, r *http.Request) {
	limit, err := queryLimit(r, 100, ebb.DecisionLogMax)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ds, err := s.client.DecisionList(r.Context(), r.URL.Query().Get("pool"), limit)
	writeAnswer(w, ds, err)
}

func (s *Server) handleLeader(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"server": s.cp.ID(), "leading": s.cp.Leading()}
	if l := s.cp.Leader(); l != nil {
		out["leader_id"], out["term"], out["expires_at"] = l.LeaderID, l.Term, l.ExpiresAt
	}
	writeJSON(w, out)
}

// router is a ServeMux that remembers its patterns, so tests can check
// every route (say, that each answers 401 without the token) without a
// hand-kept list that falls behind.
type router struct {
	*http.ServeMux
	patterns []string
}

func (m *router) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *router) HandleFunc(pattern string, h http.HandlerFunc) { m.Handle(pattern, h) }

// ServeHTTP answers API requests that match no route in JSON, as
// docs/api.md promises, where ServeMux would answer in plain text; the
// dashboard's paths keep ServeMux's answers.
func (m *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		m.ServeMux.ServeHTTP(w, r)
		return
	}
	h, pattern := m.Handler(r)
	if pattern != "" {
		m.ServeMux.ServeHTTP(w, r)
		return
	}
	// Without a pattern h is ServeMux's own 404 or 405 answer. Running it
	// into a probe tells the two apart and yields the Allow header ServeMux
	// computes, so the allowed methods are never listed by hand.
	probe := &probeWriter{header: http.Header{}}
	h.ServeHTTP(probe, r)
	switch probe.code {
	case http.StatusMethodNotAllowed:
		allow := probe.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s: use %s", r.Method, r.URL.Path, allow))
	case http.StatusNotFound:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no API route %s %s: docs/api.md lists the routes", r.Method, r.URL.Path))
	default:
		m.ServeMux.ServeHTTP(w, r)
	}
}

// probeWriter keeps the status and headers a handler answers with and
// drops its body.
type probeWriter struct {
	header http.Header
	code   int
}

func (p *probeWriter) Header() http.Header { return p.header }

func (p *probeWriter) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}

func (p *probeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}
