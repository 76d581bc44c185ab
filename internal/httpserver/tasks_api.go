package httpserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/controlplane"
)

// taskSearchLimitMax caps ?limit= so one request stays cheap.
const taskSearchLimitMax = 500

func (s *Server) taskRoutes(mux *router) {
	mux.HandleFunc("GET /api/v1/tasks", s.handleTaskSearch)
	mux.HandleFunc("POST /api/v1/tasks", s.writable(s.handleTaskEnqueue))
	mux.HandleFunc("GET /api/v1/tasks/{id}", s.handleTaskGet)
	mux.HandleFunc("POST /api/v1/tasks/{id}/{action}", s.writable(s.handleTaskAction))
	mux.HandleFunc("DELETE /api/v1/tasks/{id}", s.writable(s.handleTaskAction))
	mux.HandleFunc("GET /api/v1/queues/{queue}/dead", s.handleDeadList)
	mux.HandleFunc("POST /api/v1/queues/{queue}/dead/{action}", s.writable(s.handleDeadAction))
	mux.HandleFunc("POST /api/v1/workers/{id}/drain", s.writable(s.handleWorkerDrain))
	mux.HandleFunc("GET /api/v1/pools/{name}/timeline", s.handleTimeline)
}

// searchParams reads a task search from a query string; the API and the
// dashboard share it.
func searchParams(r *http.Request) (ebb.TaskListParams, error) {
	q := r.URL.Query()
	p := ebb.TaskListParams{Queue: q.Get("queue"), Kind: q.Get("kind"), State: ebbtype.State(q.Get("state")), Cursor: q.Get("cursor")}
	if p.State != "" && !p.State.Valid() {
		return p, fmt.Errorf("state must be one of %v", ebbtype.States())
	}
	var err error
	p.Limit, err = queryLimit(r, 0, taskSearchLimitMax)
	return p, err
}

func (s *Server) handleTaskSearch(w http.ResponseWriter, r *http.Request) {
	p, err := searchParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.client.TaskList(r.Context(), &p)
	writeAnswer(w, res, err)
}

func (s *Server) handleTaskGet(w http.ResponseWriter, r *http.Request) {
	t, err := s.client.Task(r.Context(), r.PathValue("id"))
	writeAnswer(w, t, err)
}

// EnqueueRequest is the body of POST /api/v1/tasks.
type EnqueueRequest struct {
	Kind        string            `json:"kind"`
	Args        json.RawMessage   `json:"args"`
	Queue       string            `json:"queue"`
	ID          string            `json:"id"`
	Delay       string            `json:"delay"`
	Priority    int               `json:"priority"`
	MaxAttempts int               `json:"max_attempts"`
	Timeout     string            `json:"timeout"`
	Unique      string            `json:"unique"`
	Headers     map[string]string `json:"headers"`
}

func (s *Server) handleTaskEnqueue(w http.ResponseWriter, r *http.Request) {
	var in EnqueueRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, int64(ebb.MaxArgsBytesDefault)+64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body must be a JSON task like {\"kind\":\"sleep\",\"args\":{\"ms\":100}}: "+err.Error())
		return
	}
	opts := &ebb.EnqueueOpts{ID: in.ID, Queue: in.Queue, Priority: ebb.Priority(in.Priority), MaxAttempts: in.MaxAttempts, Headers: in.Headers}
	if in.Unique != "" {
		opts.Unique = &ebb.UniqueOpts{Key: in.Unique}
	}
	if err := parseDurations(durationArg{"delay", in.Delay, &opts.Delay}, durationArg{"timeout", in.Timeout, &opts.Timeout}); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if in.Kind == "" {
		writeError(w, http.StatusBadRequest, `"kind" is required: the task kind a worker handles, like "sleep"`)
		return
	}
	if len(in.Args) == 0 {
		in.Args = json.RawMessage("{}")
	}
	res, err := s.client.EnqueueRaw(r.Context(), in.Kind, in.Args, opts)
	if err != nil {
		if errors.Is(err, ebb.ErrInvalidOpts) || errors.Is(err, ebb.ErrArgsTooLarge) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"id": res.ID, "duplicate": res.Duplicate, "state": res.State})
}

// durationArg is a JSON field holding a duration as text, like "30s".
type durationArg struct {
	name, src string
	dst       *time.Duration
}

// parseDurations sets each destination from its text ("" leaves it alone)
// and names the field that is not a non-negative duration.
func parseDurations(args ...durationArg) error {
	for _, a := range args {
		if a.src == "" {
			continue
		}
		v, err := time.ParseDuration(a.src)
		if err != nil || v < 0 {
			return fmt.Errorf("%s must be a duration like 30s or 5m, not %q", a.name, a.src)
		}
		*a.dst = v
	}
	return nil
}

// taskAction runs cancel, retry or delete; the API and the dashboard share it.
func (s *Server) taskAction(r *http.Request, id, action string) (ebbtype.State, error) {
	switch action {
	case "cancel":
		return s.client.Cancel(r.Context(), id)
	case "retry":
		return s.client.TaskRetry(r.Context(), id)
	case "delete":
		return "", s.client.TaskDelete(r.Context(), id)
	}
	return "", errUnknownAction
}

var errUnknownAction = errors.New("unknown action")

func (s *Server) handleTaskAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if r.Method == http.MethodDelete {
		action = "delete"
	}
	st, err := s.taskAction(r, r.PathValue("id"), action)
	if errors.Is(err, errUnknownAction) {
		writeError(w, http.StatusNotFound, "unknown action "+strconv.Quote(action)+": use cancel, retry or delete")
		return
	}
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	out := map[string]any{"id": r.PathValue("id")}
	if action == "delete" {
		out["deleted"] = true
	} else {
		out["state"] = st
	}
	writeJSON(w, out)
}

// writeAnswer writes v, or err mapped onto a status as writeBrokerError
// does: the shape of every read of the API.
func writeAnswer[T any](w http.ResponseWriter, v T, err error) {
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	writeJSON(w, v)
}

// writeBrokerError maps the client's errors onto HTTP statuses.
func writeBrokerError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ebb.ErrTaskNotFound), errors.Is(err, ebb.ErrWorkerNotFound), errors.Is(err, ebb.ErrScheduleNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ebb.ErrTaskState):
		writeError(w, http.StatusConflict, err.Error())
	default:
		writeError(w, http.StatusBadGateway, err.Error())
	}
}

func (s *Server) handleDeadList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, err := queryLimit(r, deadPageSize, taskSearchLimitMax)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	recs, total, err := s.client.DeadList(r.Context(), r.PathValue("queue"), &ebb.DeadListParams{Offset: offset, Limit: limit})
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	writeJSON(w, struct {
		Total int64           `json:"total"`
		Tasks []*ebb.TaskInfo `json:"tasks"`
	}{Total: total, Tasks: recs})
}

// DeadActionRequest is the body of POST /api/v1/queues/{queue}/dead/retry
// and …/delete: either ids, or all (explicitly, so an empty list never
// means everything by accident).
type DeadActionRequest struct {
	IDs []string `json:"ids"`
	All bool     `json:"all"`
}

func (s *Server) handleDeadAction(w http.ResponseWriter, r *http.Request) {
	var in DeadActionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, `body must be {"ids":["…"]} or {"all":true}: `+err.Error())
		return
	}
	if len(in.IDs) == 0 && !in.All {
		writeError(w, http.StatusBadRequest, `name the tasks with "ids", or send "all": true to act on every dead task of the queue`)
		return
	}
	if len(in.IDs) > 0 && in.All {
		writeError(w, http.StatusBadRequest, `send either "ids" or "all", not both`)
		return
	}
	n, err := s.deadAction(r, r.PathValue("queue"), r.PathValue("action"), in.IDs)
	if errors.Is(err, errUnknownAction) {
		writeError(w, http.StatusNotFound, "unknown action: use retry or delete")
		return
	}
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	writeJSON(w, map[string]int64{"count": n})
}

// deadAction retries or deletes dead tasks (all of the queue's when ids is
// empty).
func (s *Server) deadAction(r *http.Request, queue, action string, ids []string) (int64, error) {
	switch action {
	case "retry":
		return s.client.DeadRetry(r.Context(), queue, ids...)
	case "delete":
		return s.client.DeadPurge(r.Context(), queue, ids...)
	}
	return 0, errUnknownAction
}

func (s *Server) handleWorkerDrain(w http.ResponseWriter, r *http.Request) {
	if err := s.client.WorkerDrain(r.Context(), r.PathValue("id")); err != nil {
		writeBrokerError(w, err)
		return
	}
	writeJSON(w, map[string]any{"id": r.PathValue("id"), "draining": true})
}

func (s *Server) handleTimeline(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := s.cp.Pool(name); !ok {
		writeError(w, http.StatusNotFound, "no pool named "+strconv.Quote(r.PathValue("name")))
		return
	}
	span := 15 * time.Minute
	if v := r.URL.Query().Get("span"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > controlplane.TimelineSpan {
			writeError(w, http.StatusBadRequest, "span must be a duration up to 1h, like 15m")
			return
		}
		span = d
	}
	points, _ := s.cp.Timeline(name, time.Now().Add(-span))
	writeJSON(w, points)
}
