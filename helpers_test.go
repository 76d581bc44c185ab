package ebb_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/ebbq/ebb/internal/testwait"
)

var quiet = slog.New(slog.DiscardHandler)

// waitTimeout bounds every wait of the worker tests. Nothing they wait for
// takes more than a few milliseconds on a healthy machine; the margin is for
// a loaded CI runner under -race.
const waitTimeout = 15 * time.Second

// stubEpoch is where the tests' stub clocks start: far from the wall clock,
// so a time read from the wall instead of the worker's clock shows up as a
// task that is not due, a lease that never expires or a wrong timestamp.
var stubEpoch = time.Date(2100, 1, 2, 3, 4, 5, 0, time.UTC)

// rig is one test's broker (SQLite in a temp dir), client, handlers and
// clock. Workers started from it share its clock.
type rig struct {
	t        *testing.T
	ctx      context.Context
	path     string
	drv      ebbdriver.Driver
	client   *ebb.Client
	handlers *ebb.Handlers
	clock    *clock.Stub // nil: the wall clock
}

type rigOpt func(*rig)

// withStubClock runs the rig's client and workers on a stub clock.
func withStubClock() rigOpt { return func(r *rig) { r.clock = clock.NewStub(stubEpoch) } }

// withDriver uses drv instead of a fresh SQLite file.
func withDriver(drv ebbdriver.Driver) rigOpt { return func(r *rig) { r.drv = drv } }

func newRig(t *testing.T, opts ...rigOpt) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	r := &rig{t: t, ctx: ctx, handlers: ebb.NewHandlers()}
	for _, o := range opts {
		o(r)
	}
	if r.drv == nil {
		r.path = filepath.Join(t.TempDir(), "ebb.db")
		drv, err := ebbsqlite.Open(ctx, r.path, nil)
		if err != nil {
			t.Fatalf("open SQLite: %v", err)
		}
		t.Cleanup(func() { _ = drv.Close() })
		r.drv = drv
	}
	var err error
	r.client, err = ebb.NewClient(r.drv, &ebb.ClientConfig{Logger: quiet, Clock: r.clockOrNil()})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return r
}

// clockOrNil keeps a nil *clock.Stub from becoming a non-nil interface.
func (r *rig) clockOrNil() ebbtype.Clock {
	if r.clock == nil {
		return nil
	}
	return r.clock
}

// worker is a running worker and the means to stop it.
type worker struct {
	w      *ebb.Worker
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// stop cancels Run's context (a SIGTERM: drain with DrainTimeout) and
// returns Run's result.
func (w *worker) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	return w.wait(t)
}

// wait returns Run's result once it has returned by itself.
func (w *worker) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-w.done:
		return w.err
	case <-time.After(waitTimeout):
		t.Fatalf("worker did not return within %s", waitTimeout)
		return nil
	}
}

// start runs a worker with the rig's handlers, clock and a quiet logger
// unless config says otherwise; it is stopped when the test ends.
func (r *rig) start(config *ebb.WorkerConfig) *worker {
	r.t.Helper()
	return r.startCtx(context.Background(), config)
}

func (r *rig) startCtx(ctx context.Context, config *ebb.WorkerConfig) *worker {
	r.t.Helper()
	var c ebb.WorkerConfig
	if config != nil {
		c = *config
	}
	if c.Handlers == nil {
		c.Handlers = r.handlers
	}
	if c.Logger == nil {
		c.Logger = quiet
	}
	if c.Clock == nil {
		c.Clock = r.clockOrNil()
	}
	w, err := ebb.NewWorker(r.drv, &c)
	if err != nil {
		r.t.Fatalf("NewWorker: %v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	wk := &worker{w: w, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(wk.done)
		wk.err = w.Run(ctx)
	}()
	r.t.Cleanup(func() {
		cancel()
		<-wk.done
	})
	return wk
}

func (r *rig) enqueue(args ebb.Args, opts *ebb.EnqueueOpts) string {
	r.t.Helper()
	res, err := r.client.Enqueue(r.ctx, args, opts)
	if err != nil {
		r.t.Fatalf("enqueue %s: %v", args.Kind(), err)
	}
	return res.ID
}

func (r *rig) task(id string) *ebb.TaskInfo {
	r.t.Helper()
	info, err := r.client.Task(r.ctx, id)
	if err != nil {
		r.t.Fatalf("read task %s: %v", id, err)
	}
	return info
}

// waitState waits until the task is in state and returns it.
func (r *rig) waitState(id string, state ebb.State) *ebb.TaskInfo {
	r.t.Helper()
	var info *ebb.TaskInfo
	testwait.Eventually(r.t, waitTimeout, fmt.Sprintf("task %s %s", id, state), func() (bool, error) {
		var err error
		info, err = r.client.Task(r.ctx, id)
		return err == nil && info.State == state, err
	})
	return info
}

// waitAttempt waits until the task has started its n-th attempt and is in
// state (the attempt's outcome is stored).
func (r *rig) waitAttempt(id string, n int, state ebb.State) *ebb.TaskInfo {
	r.t.Helper()
	var info *ebb.TaskInfo
	testwait.Eventually(r.t, waitTimeout, fmt.Sprintf("task %s %s after attempt %d", id, state, n), func() (bool, error) {
		var err error
		info, err = r.client.Task(r.ctx, id)
		if err != nil {
			return false, err
		}
		if info.Attempt > n {
			return false, fmt.Errorf("task is at attempt %d (%s), past %d", info.Attempt, info.State, n)
		}
		return info.Attempt == n && info.State == state, nil
	})
	return info
}

// signal is a channel closed once, for handlers that tell a test they got
// somewhere.
type signal struct {
	once sync.Once
	ch   chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) fire() { s.once.Do(func() { close(s.ch) }) }

// wait fails the test unless the signal fires within waitTimeout.
func (s *signal) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-s.ch:
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not happen within %s", what, waitTimeout)
	}
}

// logRecorder is a slog handler that keeps every record's message and
// attributes, so tests can check what the worker said.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func newLogRecorder() *logRecorder { return &logRecorder{} }

func (l *logRecorder) logger() *slog.Logger { return slog.New(&recHandler{rec: l}) }

type recHandler struct {
	rec   *logRecorder
	attrs []slog.Attr
}

func (h *recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.rec.mu.Lock()
	h.rec.lines = append(h.rec.lines, b.String())
	h.rec.mu.Unlock()
	return nil
}

func (h *recHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &recHandler{rec: h.rec, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *recHandler) WithGroup(string) slog.Handler { return h }

// matching returns the lines that contain every one of subs.
func (l *logRecorder) matching(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// wait waits for a line that contains every one of subs and returns it.
func (l *logRecorder) wait(t *testing.T, subs ...string) string {
	t.Helper()
	var line string
	testwait.Eventually(t, waitTimeout, fmt.Sprintf("a log line with %q", subs), func() (bool, error) {
		m := l.matching(subs...)
		if len(m) > 0 {
			line = m[0]
		}
		return len(m) > 0, nil
	})
	return line
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
