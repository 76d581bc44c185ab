package celery

import (
	"strings"
	"sync"
	"time"
)

// Task states as Celery names them.
const (
	StateReceived = "RECEIVED"
	StateStarted  = "STARTED"
	StateSuccess  = "SUCCESS"
	StateFailure  = "FAILURE"
	StateRetry    = "RETRY"
	StateRejected = "REJECTED"
	StateRevoked  = "REVOKED"
)

// Task is what the fleet's events said about one task.
type Task struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Args      string    `json:"args"`   // repr, as Celery sends it
	Kwargs    string    `json:"kwargs"` // repr
	State     string    `json:"state"`
	Worker    string    `json:"worker,omitempty"` // nodename
	Retries   int       `json:"retries"`
	Received  time.Time `json:"received,omitzero"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
	Runtime   float64   `json:"runtime_s,omitempty"`
	Result    string    `json:"result,omitempty"` // repr
	Exception string    `json:"exception,omitempty"`
	Traceback string    `json:"traceback,omitempty"`
}

// held: received or started, and not yet finished.
func (t *Task) held() bool { return t.State == StateReceived || t.State == StateStarted }

// Worker is what the fleet's events said about one Celery worker.
type Worker struct {
	// Hostname is the nodename, name@host; ID is the part before "@",
	// which ebb's targets set to the instance id (--hostname <id>@%h).
	Hostname string    `json:"hostname"`
	ID       string    `json:"id"`
	PID      int       `json:"pid"`
	Freq     float64   `json:"freq_s"`
	Active   int       `json:"active"`    // running tasks, from the last heartbeat
	Process  int       `json:"processed"` // tasks it has run, from the last heartbeat
	Reserved int       `json:"reserved"`  // received and not started: prefetched, held by this worker
	Held     int       `json:"held"`      // received or started and not finished, from task events
	Online   time.Time `json:"online_at"`
	LastBeat time.Time `json:"heartbeat_at"`
	Alive    bool      `json:"alive"`
	Version  string    `json:"sw_ver,omitempty"`
	// ShutdownAt is when ebb asked it to shut down (warm); zero if never.
	ShutdownAt time.Time `json:"shutdown_at,omitzero"`
	// CancelAt is when ebb asked it to stop consuming the pool's queues
	// (cancel_consumer) so that its platform can retire it; zero if never.
	// Cancelled is set once it confirmed every cancel and its last BRPOP
	// has had time to return: from then on it takes no new message.
	CancelAt  time.Time `json:"cancel_at,omitzero"`
	Cancelled bool      `json:"cancelled,omitempty"`
	// Settings are what its remote-control `conf` reply said, when asked.
	Settings *Settings `json:"settings,omitempty"`
}

// Settings are the worker settings that decide whether scale-in is safe.
type Settings struct {
	AcksLate           bool `json:"task_acks_late"`
	PrefetchMultiplier int  `json:"worker_prefetch_multiplier"`
	Concurrency        int  `json:"worker_concurrency,omitempty"`
}

// Idle: alive, running nothing and holding no prefetched message.
func (w *Worker) Idle() bool { return w.Alive && w.Active == 0 && w.Held == 0 }

// heartbeatExpireWindow is Celery's HEARTBEAT_EXPIRE_WINDOW (percent of
// freq): a worker is gone once two heartbeats are missed.
const heartbeatExpireWindow = 2.0

// maxTasksDefault bounds the tasks kept, as Celery's State does (10000).
const maxTasksDefault = 10000

// State is the fleet as its events describe it, like celery.events.State:
// workers by nodename and the latest tasks, bounded.
type State struct {
	mu       sync.Mutex
	workers  map[string]*wstate
	tasks    map[string]*Task
	order    []string // task ids, oldest first, for eviction
	maxTasks int
	events   int64
}

type wstate struct {
	Worker
	held map[string]bool // task ids received or started here, not finished
}

// NewState keeps at most maxTasks tasks (0: 10000).
func NewState(maxTasks int) *State {
	if maxTasks <= 0 {
		maxTasks = maxTasksDefault
	}
	return &State{workers: map[string]*wstate{}, tasks: map[string]*Task{}, maxTasks: maxTasks}
}

// event is one Celery event; fields not in a type are zero.
type event struct {
	Type      string  `json:"type"`
	Hostname  string  `json:"hostname"`
	Timestamp float64 `json:"timestamp"`
	PID       int     `json:"pid"`
	Freq      float64 `json:"freq"`
	Active    *int    `json:"active"`
	Processed *int    `json:"processed"`
	SwVer     string  `json:"sw_ver"`

	UUID      string  `json:"uuid"`
	Name      string  `json:"name"`
	Args      string  `json:"args"`
	Kwargs    string  `json:"kwargs"`
	Retries   int     `json:"retries"`
	Result    string  `json:"result"`
	Runtime   float64 `json:"runtime"`
	Exception string  `json:"exception"`
	Traceback string  `json:"traceback"`
}

// apply folds one event in; now is when ebb received it. Liveness is
// judged on receipt time rather than the sender's clock, so a worker whose
// clock is off is neither dropped early nor kept late.
func (s *State) apply(ev event, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events++
	if strings.HasPrefix(ev.Type, "worker-") {
		w := s.worker(ev.Hostname)
		if ev.PID != 0 {
			w.PID = ev.PID
		}
		if ev.Freq > 0 {
			w.Freq = ev.Freq
		}
		if ev.SwVer != "" {
			w.Version = ev.SwVer
		}
		if ev.Active != nil {
			w.Active = *ev.Active
		}
		if ev.Processed != nil {
			w.Process = *ev.Processed
		}
		switch ev.Type {
		case "worker-online":
			// A new process under the same nodename (a restarted container
			// keeps its pod's name) consumes its queues again.
			w.Online, w.LastBeat = now, now
			w.ShutdownAt, w.CancelAt, w.Cancelled = time.Time{}, time.Time{}, false
			w.held = map[string]bool{}
		case "worker-heartbeat":
			if w.Online.IsZero() {
				w.Online = now // ebb started after the worker
			}
			w.LastBeat = now
		case "worker-offline":
			w.LastBeat = time.Time{}
			w.held = map[string]bool{}
			w.Active = 0
		}
		return
	}
	if ev.UUID == "" {
		return
	}
	t := s.tasks[ev.UUID]
	if t == nil {
		t = &Task{ID: ev.UUID}
		s.tasks[ev.UUID] = t
		s.order = append(s.order, ev.UUID)
		s.evict()
	}
	release := func() {
		if t.Worker != "" {
			if w := s.workers[t.Worker]; w != nil {
				delete(w.held, t.ID)
			}
		}
	}
	switch ev.Type {
	case "task-received":
		release()
		t.Name, t.Args, t.Kwargs, t.Retries = ev.Name, ev.Args, ev.Kwargs, ev.Retries
		t.State, t.Worker, t.Received = StateReceived, ev.Hostname, now
		t.Started, t.Finished, t.Result, t.Exception, t.Traceback, t.Runtime = time.Time{}, time.Time{}, "", "", "", 0
		s.worker(ev.Hostname).held[t.ID] = true
	case "task-started":
		if t.Worker != ev.Hostname {
			release()
		}
		t.State, t.Worker, t.Started = StateStarted, ev.Hostname, now
		s.worker(ev.Hostname).held[t.ID] = true
	case "task-succeeded":
		release()
		t.State, t.Finished, t.Result, t.Runtime = StateSuccess, now, ev.Result, ev.Runtime
	case "task-failed":
		release()
		t.State, t.Finished, t.Exception, t.Traceback = StateFailure, now, ev.Exception, ev.Traceback
	case "task-retried":
		release()
		t.State, t.Exception, t.Traceback = StateRetry, ev.Exception, ev.Traceback
	case "task-rejected":
		release()
		t.State, t.Finished = StateRejected, now
	case "task-revoked":
		release()
		t.State, t.Finished = StateRevoked, now
	}
}

func (s *State) worker(hostname string) *wstate {
	w := s.workers[hostname]
	if w == nil {
		id, _, _ := strings.Cut(hostname, "@")
		w = &wstate{Worker: Worker{Hostname: hostname, ID: id, Freq: 2}, held: map[string]bool{}}
		s.workers[hostname] = w
	}
	return w
}

// evict drops the oldest tasks past the bound; a task still held by a
// live worker is kept (it is moved to the back), so counts never lose one.
func (s *State) evict() {
	for tries := len(s.order); len(s.tasks) > s.maxTasks && tries > 0; tries-- {
		id := s.order[0]
		s.order = s.order[1:]
		if t := s.tasks[id]; t != nil && t.held() {
			s.order = append(s.order, id)
			continue
		}
		delete(s.tasks, id)
	}
}

func (s *State) alive(w *wstate, now time.Time) bool {
	if w.LastBeat.IsZero() {
		return false
	}
	window := time.Duration(w.Freq * heartbeatExpireWindow * float64(time.Second))
	return now.Before(w.LastBeat.Add(window))
}

// Workers returns every worker seen since ebb started (live ones first
// appear Alive) as of now.
func (s *State) Workers(now time.Time) []Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Worker, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, s.view(w, now))
	}
	return out
}

// Worker returns one worker by nodename.
func (s *State) Worker(hostname string, now time.Time) (Worker, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.workers[hostname]
	if w == nil {
		return Worker{}, false
	}
	return s.view(w, now), true
}

func (s *State) view(w *wstate, now time.Time) Worker {
	v := w.Worker
	v.Alive = s.alive(w, now)
	v.Held, v.Reserved = 0, 0
	if v.Alive {
		v.Held = len(w.held)
		for id := range w.held {
			if t := s.tasks[id]; t != nil && t.State == StateReceived {
				v.Reserved++
			}
		}
	} else {
		v.Active = 0
	}
	return v
}

// HeldBy returns the ids of tasks live workers hold (received or started,
// not finished), for the in-flight count.
func (s *State) HeldBy(now time.Time) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for _, w := range s.workers {
		if s.alive(w, now) {
			for id := range w.held {
				out[id] = w.Hostname
			}
		}
	}
	return out
}

// Task returns one task.
func (s *State) Task(id string) (Task, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[id]
	if t == nil {
		return Task{}, false
	}
	return *t, true
}

// Tasks returns up to limit tasks, newest first.
func (s *State) Tasks(limit int) []Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Task
	for i := len(s.order) - 1; i >= 0 && len(out) < limit; i-- {
		if t := s.tasks[s.order[i]]; t != nil {
			out = append(out, *t)
		}
	}
	return out
}

// markShutdown records that ebb asked the worker to shut down.
func (s *State) markShutdown(hostname string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.worker(hostname).ShutdownAt = at
}

// markCancel records that ebb asked the worker to stop consuming at at
// (zero: the request failed, it consumes as before). With done, it records
// that the request asked at at is complete, unless a newer one (or a new
// process) replaced it.
func (s *State) markCancel(hostname string, at time.Time, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.worker(hostname)
	if done {
		if w.CancelAt.Equal(at) && !at.IsZero() {
			w.Cancelled = true
		}
		return
	}
	w.CancelAt, w.Cancelled = at, false
}

// setSettings records a worker's observed settings.
func (s *State) setSettings(hostname string, st Settings) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.worker(hostname).Settings = &st
}

// forget drops workers gone for longer than keep, so a fleet that churns
// does not grow the map without bound.
func (s *State) forget(now time.Time, keep time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, w := range s.workers {
		if !s.alive(w, now) && now.Sub(w.LastBeat) > keep && now.Sub(w.Online) > keep {
			delete(s.workers, h)
		}
	}
}
