package httpserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/celery"
	"github.com/ebbq/ebb/internal/controlplane"
)

// The Celery side of the surface: a Celery pool's queues join ebb's in
// /api/v1/queues and /metrics (Kind "celery"), and its workers and tasks,
// as the fleet's events and the result backend describe them, get pages
// and API routes of their own, as Flower's.

func (s *Server) celeryRoutes(mux *router) {
	mux.HandleFunc("GET /api/v1/celery/workers", s.handleCeleryWorkers)
	mux.HandleFunc("POST /api/v1/celery/workers/{name}/shutdown", s.writable(s.handleCeleryShutdown))
	mux.HandleFunc("GET /api/v1/celery/tasks", s.handleCeleryTasks)
	mux.HandleFunc("GET /api/v1/celery/tasks/{id}", s.handleCeleryTask)
	mux.HandleFunc("GET /celery", s.pageCelery)
	mux.HandleFunc("GET /celery/workers/{name}", s.pageCeleryWorker)
	mux.HandleFunc("POST /celery/workers/{name}/shutdown", s.writable(withCSRF(s.formCeleryShutdown)))
	mux.HandleFunc("GET /celery/tasks/{id}", s.pageCeleryTask)
}

// celeryQueues are the Celery pools' queues in the API's shape.
func (s *Server) celeryQueues(ctx context.Context, now time.Time, maxAge time.Duration) ([]QueueJSON, error) {
	stats, err := s.cp.CeleryQueueStats(ctx, maxAge)
	out := QueuesJSON(stats, now, nil)
	for i := range out {
		out[i].Kind = "celery"
	}
	if err != nil {
		err = errors.New("celery broker: " + err.Error())
	}
	return out, err
}

func (s *Server) handleCeleryWorkers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.cp.CeleryPools())
}

func (s *Server) handleCeleryShutdown(w http.ResponseWriter, r *http.Request) {
	if err := s.cp.CeleryShutdown(r.Context(), r.PathValue("name")); err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, ebbtype.ErrWorkerNotFound) {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	writeJSON(w, map[string]string{"shutdown": r.PathValue("name")})
}

func (s *Server) handleCeleryTasks(w http.ResponseWriter, r *http.Request) {
	limit, err := queryLimit(r, 100, celeryTasksMax)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, s.cp.CeleryTasks(limit))
}

const celeryTasksMax = 1000

// celeryTaskJSON is GET /api/v1/celery/tasks/{id}: the events' view and
// the result backend's record (null when it has none).
type celeryTaskJSON struct {
	Task   celery.Task    `json:"task"`
	Result *celery.Result `json:"result"`
}

func (s *Server) handleCeleryTask(w http.ResponseWriter, r *http.Request) {
	t, res, err := s.cp.CeleryTask(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, controlplane.ErrCeleryTaskNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		writeError(w, http.StatusBadGateway, err.Error())
	default:
		writeJSON(w, celeryTaskJSON{Task: t, Result: res})
	}
}

// celeryData is the Celery page's live part.
type celeryData struct {
	Pools []controlplane.CeleryPool
	Tasks []celery.Task
	Now   time.Time
}

func (s *Server) celeryPage(context.Context) celeryData {
	return celeryData{Pools: s.cp.CeleryPools(), Tasks: s.cp.CeleryTasks(50), Now: time.Now()}
}

func (s *Server) pageCelery(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "celery", page{Title: "Celery", Nav: "celery", Data: s.celeryPage(r.Context()), Live: "/live/celery"})
}

type celeryWorkerData struct {
	Worker celery.Worker
	Pool   string
	Found  bool
	Tasks  []celery.Task
}

func (s *Server) celeryWorkerPage(name string) celeryWorkerData {
	w, pool, ok := s.cp.CeleryWorker(name)
	d := celeryWorkerData{Worker: w, Pool: pool, Found: ok}
	for _, t := range s.cp.CeleryTasks(celeryTasksMax) {
		if t.Worker == name && len(d.Tasks) < 20 {
			d.Tasks = append(d.Tasks, t)
		}
	}
	return d
}

func (s *Server) pageCeleryWorker(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d := s.celeryWorkerPage(name)
	if !d.Found {
		http.NotFound(w, r)
		return
	}
	s.render(w, r, "celery_worker", page{Title: "Celery worker " + name, Nav: "celery", Data: d,
		Live: "/live/celery-worker?" + url.Values{"name": {name}}.Encode()})
}

func (s *Server) formCeleryShutdown(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	msg := "Asked " + name + " for a warm shutdown: it finishes what it runs, then exits."
	if err := s.cp.CeleryShutdown(r.Context(), name); err != nil {
		msg = actionFailed("Shutdown", err)
	}
	redirectFlash(w, r, "/celery/workers/"+url.PathEscape(name), msg)
}

type celeryTaskData struct {
	Task   celery.Task
	Result *celery.Result
	Error  string
}

func (s *Server) celeryTaskPage(ctx context.Context, id string) celeryTaskData {
	t, res, err := s.cp.CeleryTask(ctx, id)
	d := celeryTaskData{Task: t, Result: res}
	if err != nil {
		d.Error = err.Error()
	}
	return d
}

func (s *Server) pageCeleryTask(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d := s.celeryTaskPage(r.Context(), id)
	p := page{Title: "Celery task " + id, Nav: "celery", Data: d, Live: "/live/celery-task?" + url.Values{"id": {id}}.Encode()}
	if strings.HasPrefix(d.Error, controlplane.ErrCeleryTaskNotFound.Error()) {
		p.Status = http.StatusNotFound
	}
	s.render(w, r, "celery_task", p)
}

// celeryLiveView is liveView for the Celery pages.
func (s *Server) celeryLiveView(view string, q url.Values) func(context.Context) (string, any) {
	switch view {
	case "celery":
		return func(ctx context.Context) (string, any) { return "celery-live", s.celeryPage(ctx) }
	case "celery-worker":
		name := q.Get("name")
		return func(context.Context) (string, any) { return "celery-worker-live", s.celeryWorkerPage(name) }
	case "celery-task":
		id := q.Get("id")
		return func(ctx context.Context) (string, any) { return "celery-task-live", s.celeryTaskPage(ctx, id) }
	}
	return nil
}
