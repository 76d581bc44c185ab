package httpserver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/controlplane"
)

// overviewData is the overview's live part.
type overviewData struct {
	Queues []QueueJSON
	Pools  []poolCard
	Error  string
	Now    time.Time
}

type poolCard struct {
	controlplane.PoolView
	Recent []controlplane.Point
}

func (s *Server) overview(ctx context.Context) overviewData {
	now := time.Now()
	d := overviewData{Now: now, Queues: []QueueJSON{}}
	stats, points, err := s.cp.SamplePools(ctx, now)
	if err != nil {
		d.Error = "broker: " + err.Error()
	} else {
		d.Queues = QueuesJSON(stats, now, s.cp.Rates)
	}
	cq, err := s.celeryQueues(ctx, now, time.Second)
	if err != nil {
		d.Error = err.Error()
	}
	d.Queues = append(d.Queues, cq...)
	for i, v := range s.cp.Pools() {
		if !s.cp.Leading() && points != nil {
			// Only the leader reconciles; elsewhere show what the registry says.
			v.Current, v.Busy, v.Desired = points[i].Workers, points[i].Busy, -1
		}
		recent, _ := s.cp.Timeline(v.Name, now.Add(-5*time.Minute))
		d.Pools = append(d.Pools, poolCard{PoolView: v, Recent: recent})
	}
	return d
}

func (s *Server) pageOverview(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "overview", page{Title: "Overview", Nav: "overview", Data: s.overview(r.Context()), Live: "/live/overview"})
}

// poolData is the pool page's live part.
type poolData struct {
	Pool      controlplane.PoolView
	Chart     chartData
	Decisions []decisionRow
	Span      string
	Error     string
}

type decisionRow struct {
	ebbtype.Decision
	In controlplane.DecisionInputs
}

var chartSpans = []string{"5m", "15m", "1h"}

func (s *Server) poolPage(ctx context.Context, name, span string) poolData {
	now := time.Now()
	v, _ := s.cp.Pool(name)
	d := poolData{Pool: v, Span: span}
	spanD, _ := time.ParseDuration(span)
	// Keep the picture current even when nobody else reads counts.
	_, _, err := s.cp.SamplePools(ctx, now)
	ds, derr := s.client.DecisionList(ctx, name, 50)
	if err = cmp.Or(err, derr); err != nil {
		d.Error = "broker: " + err.Error()
	}
	for _, dec := range ds {
		row := decisionRow{Decision: dec}
		_ = json.Unmarshal(dec.Inputs, &row.In)
		d.Decisions = append(d.Decisions, row)
	}
	points, _ := s.cp.Timeline(name, now.Add(-spanD))
	d.Chart = chartData{From: chartFrom(points, now, spanD, time.Minute), To: now, Points: points, Decisions: ds, Max: v.Max}
	return d
}

func (s *Server) pagePool(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := s.cp.Pool(name); !ok {
		http.NotFound(w, r)
		return
	}
	span := r.URL.Query().Get("span")
	if !slices.Contains(chartSpans, span) {
		span = "15m"
	}
	s.render(w, r, "pool", page{Title: "Pool " + name, Nav: "overview", Data: s.poolPage(r.Context(), name, span),
		Live: "/live/pool?" + url.Values{"name": {name}, "span": {span}}.Encode()})
}

type tasksData struct {
	Params  ebb.TaskListParams
	States  []ebbtype.State
	Queues  []string
	Tasks   []*ebbtype.TaskInfo
	Cursor  string
	Scanned int
	Error   string
	Took    time.Duration
}

func (s *Server) pageTasks(w http.ResponseWriter, r *http.Request) {
	if id := r.URL.Query().Get("id"); id != "" {
		http.Redirect(w, r, "/tasks/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	d := tasksData{States: ebbtype.States()}
	p, err := searchParams(r)
	d.Params = p
	if stats, err := s.cp.QueueStats(r.Context(), 5*time.Second); err == nil {
		for _, q := range stats {
			d.Queues = append(d.Queues, q.Name)
		}
	}
	if err != nil {
		d.Error = err.Error()
	} else {
		start := time.Now()
		res, err := s.client.TaskList(r.Context(), &p)
		d.Took = time.Since(start)
		if err != nil {
			d.Error = err.Error()
		} else {
			d.Tasks, d.Cursor, d.Scanned = res.Tasks, res.Cursor, res.Scanned
		}
	}
	s.render(w, r, "tasks", page{Title: "Tasks", Nav: "tasks", Data: d})
}

type taskData struct {
	Task    *ebbtype.TaskInfo
	Wait    time.Duration
	Run     time.Duration
	Missing string
}

func (s *Server) taskData(ctx context.Context, id string) taskData {
	t, err := s.client.Task(ctx, id)
	if errors.Is(err, ebbtype.ErrTaskNotFound) {
		return taskData{Missing: "No task " + strconv.Quote(id) + ": it never existed, was deleted, or its retention ended."}
	}
	if err != nil {
		return taskData{Missing: "broker: " + err.Error()}
	}
	d := taskData{Task: t}
	if !t.StartedAt.IsZero() {
		d.Wait = t.StartedAt.Sub(t.RunAt)
		end := t.FinishedAt
		if end.IsZero() && t.State == ebbtype.StateRunning {
			end = time.Now()
		}
		if !end.IsZero() && end.After(t.StartedAt) {
			d.Run = end.Sub(t.StartedAt)
		}
	}
	return d
}

func (s *Server) pageTask(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d := s.taskData(r.Context(), id)
	pg := page{Title: "Task " + id, Nav: "tasks", Data: d, Live: "/live/task?" + url.Values{"id": {id}}.Encode()}
	if d.Task == nil {
		pg.Status = http.StatusNotFound
	}
	s.render(w, r, "task", pg)
}

func (s *Server) formTaskAction(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	back := "/tasks/" + url.PathEscape(id)
	if action == "delete" && r.PostFormValue("confirm") != "yes" {
		s.render(w, r, "confirm", page{Title: "Confirm", Nav: "tasks", Data: confirmData{
			Question: "Delete task " + id + "? Its args, result and error history are gone for good.",
			Action:   "/tasks/" + url.PathEscape(id) + "/delete", Back: back, Button: "Delete task"}})
		return
	}
	st, err := s.taskAction(r, id, action)
	switch {
	case errors.Is(err, errUnknownAction):
		http.Error(w, "unknown action", http.StatusNotFound)
	case err != nil:
		redirectFlash(w, r, back, actionFailed(action, err))
	case action == "delete":
		redirectFlash(w, r, "/tasks", "Deleted task "+id+".")
	default:
		redirectFlash(w, r, back, "Task "+id+": "+action+" done, now "+string(st)+".")
	}
}

type deadData struct {
	Queue  string
	Tasks  []*ebbtype.TaskInfo
	Total  int64
	Offset int
	Next   int
	Prev   int
	Error  string
}

const deadPageSize = 50

func (s *Server) pageDead(w http.ResponseWriter, r *http.Request) {
	q := r.PathValue("queue")
	offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	offset = max(0, offset)
	d := deadData{Queue: q, Offset: offset, Prev: max(0, offset-deadPageSize), Next: -1}
	recs, total, err := s.client.DeadList(r.Context(), q, &ebb.DeadListParams{Offset: offset, Limit: deadPageSize})
	if err != nil {
		d.Error = err.Error()
	}
	d.Tasks, d.Total = recs, total
	if int64(offset+deadPageSize) < total {
		d.Next = offset + deadPageSize
	}
	s.render(w, r, "dead", page{Title: "Dead letters: " + q, Nav: "overview", Data: d})
}

type confirmData struct {
	Question string
	Action   string
	Back     string
	Button   string
	IDs      []string
	All      bool
}

// deadVerbs names the dead-letter actions: what the button says, what the
// outcome says.
var deadVerbs = map[string][2]string{"retry": {"Retry", "Retried"}, "delete": {"Delete", "Deleted"}}

// formDeadAction retries or deletes dead tasks. Acting on all of a queue's
// dead tasks, or deleting any, first shows a confirmation page.
func (s *Server) formDeadAction(w http.ResponseWriter, r *http.Request) {
	q, action := r.PathValue("queue"), r.PathValue("action")
	back := "/queues/" + url.PathEscape(q) + "/dead"
	if _, ok := deadVerbs[action]; !ok {
		http.Error(w, "unknown action: use retry or delete", http.StatusNotFound)
		return
	}
	_ = r.ParseForm()
	ids := r.PostForm["id"]
	all := r.PostFormValue("all") == "yes"
	if len(ids) == 0 && !all {
		redirectFlash(w, r, back, "Select dead tasks first, or use the "+action+" all button.")
		return
	}
	if all {
		ids = nil
	}
	if (all || action == "delete") && r.PostFormValue("confirm") != "yes" {
		what := strconv.Itoa(len(ids)) + " dead task(s)"
		if all {
			_, total, _ := s.client.DeadList(r.Context(), q, &ebb.DeadListParams{Limit: 1})
			what = "all " + fmtInt(total) + " dead tasks"
		}
		verb := deadVerbs[action][0]
		s.render(w, r, "confirm", page{Title: "Confirm", Nav: "overview", Data: confirmData{
			Question: verb + " " + what + " of queue " + q + "?", Action: back + "/" + action, Back: back,
			Button: verb + " " + what, IDs: ids, All: all}})
		return
	}
	n, err := s.deadAction(r, q, action, ids)
	if err != nil {
		redirectFlash(w, r, back, actionFailed(action, err))
		return
	}
	redirectFlash(w, r, back, deadVerbs[action][1]+" "+fmtInt(n)+" dead task(s).")
}

type workersData struct {
	Workers []ebbtype.WorkerInfo
	Error   string
}

func (s *Server) workers(ctx context.Context) workersData {
	ws, err := s.client.WorkerList(ctx)
	d := workersData{Workers: ws}
	if err != nil {
		d.Error = err.Error()
	}
	return d
}

func (s *Server) pageWorkers(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "workers", page{Title: "Workers", Nav: "workers", Data: s.workers(r.Context()), Live: "/live/workers"})
}

func (s *Server) formWorkerDrain(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.client.WorkerDrain(r.Context(), id); err != nil {
		redirectFlash(w, r, "/workers", actionFailed("drain", err))
		return
	}
	redirectFlash(w, r, "/workers", "Asked worker "+id+" to drain: it finishes its running tasks, takes no new ones and exits.")
}

type schedulesData struct {
	Schedules []ebbtype.Schedule
	Error     string
}

func (s *Server) schedules(ctx context.Context) schedulesData {
	recs, err := s.client.ScheduleList(ctx)
	if err != nil {
		return schedulesData{Error: err.Error()}
	}
	return schedulesData{Schedules: recs}
}

func (s *Server) pageSchedules(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "schedules", page{Title: "Schedules", Nav: "schedules", Data: s.schedules(r.Context()), Live: "/live/schedules"})
}

func (s *Server) formScheduleAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	msg, _, err := s.scheduleAct(r.Context(), name, action)
	if errors.Is(err, errUnknownAction) {
		http.Error(w, "unknown action: use pause, resume or run-now", http.StatusNotFound)
		return
	}
	if err != nil {
		msg = actionFailed(action, err)
	}
	redirectFlash(w, r, "/schedules", msg)
}
