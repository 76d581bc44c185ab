package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/config"
)

func (s *Server) scheduleRoutes(mux *router) {
	mux.HandleFunc("GET /api/v1/schedules", s.handleSchedules)
	mux.HandleFunc("POST /api/v1/schedules", s.writable(s.handleScheduleAdd))
	mux.HandleFunc("DELETE /api/v1/schedules/{name}", s.writable(s.handleScheduleAction))
	mux.HandleFunc("POST /api/v1/schedules/{name}/{action}", s.writable(s.handleScheduleAction))
}

// writable refuses changes in read-only mode: API clients get a JSON error,
// dashboard forms plain text.
func (s *Server) writable(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !s.cfg.ReadOnly:
			h(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/"):
			writeError(w, http.StatusForbidden, "the API is read-only (server.read_only)")
		default:
			http.Error(w, "this dashboard is read-only (server.read_only)", http.StatusForbidden)
		}
	}
}

func (s *Server) handleSchedules(w http.ResponseWriter, r *http.Request) {
	recs, err := s.client.ScheduleList(r.Context())
	writeAnswer(w, recs, err)
}

// handleScheduleAdd takes a schedule in the config file's shape, as JSON.
func (s *Server) handleScheduleAdd(w http.ResponseWriter, r *http.Request) {
	var in struct {
		config.Schedule
		Every   string `json:"every"`
		Timeout string `json:"timeout"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body must be a JSON schedule: "+err.Error())
		return
	}
	if err := parseDurations(durationArg{"every", in.Every, &in.Schedule.Every}, durationArg{"timeout", in.Timeout, &in.Schedule.Timeout}); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rec, err := in.Schedule.Record(time.Now())
	if err == nil && (in.Name == "" || in.Kind == "") {
		err = errors.New("name and kind are required")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	stored, err := s.client.ScheduleUpsert(r.Context(), rec)
	switch {
	case errors.Is(err, ebb.ErrInvalidOpts):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	s.cp.SchedulesChanged()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(stored)
}

func (s *Server) handleScheduleAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	if r.Method == http.MethodDelete {
		action = "delete"
	}
	_, taskID, err := s.scheduleAct(r.Context(), name, action)
	switch {
	case errors.Is(err, errUnknownAction):
		writeError(w, http.StatusNotFound, "unknown action "+action+": use pause, resume or run-now")
	case errors.Is(err, ebb.ErrScheduleNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		writeError(w, http.StatusBadGateway, err.Error())
	case taskID != "":
		writeJSON(w, map[string]string{"task_id": taskID})
	default:
		writeJSON(w, map[string]string{"ok": name})
	}
}

// scheduleAct pauses, resumes, runs now or deletes a schedule; the API and
// the dashboard share it. It returns a sentence for people and, for run-now,
// the task id.
func (s *Server) scheduleAct(ctx context.Context, name, action string) (msg, taskID string, err error) {
	switch action {
	case "delete":
		err, msg = s.client.ScheduleDelete(ctx, name), "Deleted schedule "+name+"."
	case "pause":
		err, msg = s.client.SchedulePause(ctx, name), "Paused schedule "+name+"."
	case "resume":
		err, msg = s.client.ScheduleResume(ctx, name), "Resumed schedule "+name+"; ticks missed while paused are skipped."
	case "run-now":
		taskID, err = s.client.ScheduleRunNow(ctx, name)
		msg = "Enqueued task " + taskID + " for schedule " + name + "."
	default:
		return "", "", errUnknownAction
	}
	if err != nil {
		return "", "", err
	}
	s.cp.SchedulesChanged()
	return msg, taskID, nil
}
