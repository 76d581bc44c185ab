package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/schedule"
)

// ScheduleJSON is a schedule as the API and `ebb schedule list --json` show
// it: the stored record plus its next run.
type ScheduleJSON struct {
	ebbdriver.ScheduleRecord
	Args    json.RawMessage `json:"args"`
	Spec    string          `json:"spec"`
	NextRun time.Time       `json:"next_run,omitzero"`
	Error   string          `json:"error,omitempty"`
}

// SchedulesJSON adds the next run to each record.
func SchedulesJSON(recs []ebbdriver.ScheduleRecord, now time.Time) []ScheduleJSON {
	out := make([]ScheduleJSON, len(recs))
	for i, r := range recs {
		out[i] = ScheduleJSON{ScheduleRecord: r, Args: json.RawMessage(r.Args)}
		spec, err := schedule.FromRecord(&recs[i])
		if err != nil {
			out[i].Error = err.Error()
			continue
		}
		out[i].Spec = spec.String()
		if !r.Paused {
			_, _, out[i].NextRun = schedule.Due(spec, r.CreatedAt, r.LastTickAt, now, schedule.CatchUp(r.CatchUp), beatGrace)
		}
	}
	return out
}

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
		case !s.cfg.Server.ReadOnly:
			h(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/"):
			writeError(w, http.StatusForbidden, "the API is read-only (server.read_only)")
		default:
			http.Error(w, "this dashboard is read-only (server.read_only)", http.StatusForbidden)
		}
	}
}

func (s *Server) scheduleStore(w http.ResponseWriter) (ebbdriver.Schedules, bool) {
	st, ok := s.drv.(ebbdriver.Schedules)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this broker cannot store schedules")
	}
	return st, ok
}

func (s *Server) handleSchedules(w http.ResponseWriter, r *http.Request) {
	st, ok := s.scheduleStore(w)
	if !ok {
		return
	}
	recs, err := st.ScheduleList(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, "broker: "+err.Error())
		return
	}
	writeJSON(w, SchedulesJSON(recs, time.Now()))
}

// handleScheduleAdd takes a schedule in the config file's shape, as JSON.
func (s *Server) handleScheduleAdd(w http.ResponseWriter, r *http.Request) {
	st, ok := s.scheduleStore(w)
	if !ok {
		return
	}
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
	if err := st.ScheduleUpsert(r.Context(), rec); err != nil {
		writeError(w, http.StatusBadGateway, "broker: "+err.Error())
		return
	}
	s.scheduleChanged()
	// Answer with what the broker keeps (a re-added schedule keeps its
	// creation time and firing state).
	if stored, err := st.ScheduleGet(r.Context(), rec.Name); err == nil {
		rec = stored
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(SchedulesJSON([]ebbdriver.ScheduleRecord{*rec}, time.Now())[0])
}

func (s *Server) handleScheduleAction(w http.ResponseWriter, r *http.Request) {
	st, ok := s.scheduleStore(w)
	if !ok {
		return
	}
	name, action := r.PathValue("name"), r.PathValue("action")
	if r.Method == http.MethodDelete {
		action = "delete"
	}
	_, taskID, err := s.scheduleAct(r.Context(), st, name, action)
	switch {
	case errors.Is(err, errUnknownAction):
		writeError(w, http.StatusNotFound, "unknown action "+action+": use pause, resume or run-now")
	case errors.Is(err, ebbdriver.ErrScheduleNotFound):
		writeError(w, http.StatusNotFound, "no schedule named "+name)
	case err != nil:
		writeError(w, http.StatusBadGateway, "broker: "+err.Error())
	case taskID != "":
		writeJSON(w, map[string]string{"task_id": taskID})
	default:
		writeJSON(w, map[string]string{"ok": name})
	}
}

// scheduleAct pauses, resumes, runs now or deletes a schedule; the API and
// the dashboard share it. It returns a sentence for people and, for run-now,
// the task id.
func (s *Server) scheduleAct(ctx context.Context, st ebbdriver.Schedules, name, action string) (msg, taskID string, err error) {
	switch action {
	case "delete":
		err, msg = st.ScheduleDelete(ctx, name), "Deleted schedule "+name+"."
	case "pause":
		err, msg = st.ScheduleSetPaused(ctx, name, true), "Paused schedule "+name+"."
	case "resume":
		err, msg = ResumeSchedule(ctx, st, name, time.Now()), "Resumed schedule "+name+"; ticks missed while paused are skipped."
	case "run-now":
		taskID, err = RunScheduleNow(ctx, s.drv, st, name)
		msg = "Enqueued task " + taskID + " for schedule " + name + "."
	default:
		return "", "", errUnknownAction
	}
	if err != nil {
		return "", "", err
	}
	s.scheduleChanged()
	return msg, taskID, nil
}
