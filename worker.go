package ebb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/ebbq/ebb/internal/maintenance"
	"github.com/ebbq/ebb/internal/tid"
)

// Defaults of WorkerConfig.
const (
	ConcurrencyDefault = 100
	// FetchBatchMaxDefault caps how many tasks one fetch claims.
	FetchBatchMaxDefault = 500
	// LeaseDurationDefault is how long a worker owns a task without renewing.
	// A worker that dies loses its tasks after at most this long.
	LeaseDurationDefault = 30 * time.Second
	// HeartbeatIntervalDefault is how often leases are renewed and the worker
	// registry entry refreshed; a third of the lease leaves two misses of
	// slack.
	HeartbeatIntervalDefault = 10 * time.Second
	// DrainTimeoutDefault fits inside Kubernetes' default 30 s termination
	// grace period with room to hand back what did not finish.
	DrainTimeoutDefault = 25 * time.Second
	// PollIntervalDefault is the backstop fetch while idle, in case a broker
	// notification was lost; wake-ups normally come from notifications.
	PollIntervalDefault = 5 * time.Second
	// HoldTimeoutDefault leaves the control plane (which sees a drained
	// worker within a heartbeat) and the platform (an ECS service or a
	// Deployment stops a replica within a minute or two) ample time, yet does
	// not let a worker whose control plane died sit idle and paid for all day.
	// Exiting then is safe, since a drained worker holds nothing: at worst
	// the platform starts a replacement.
	HoldTimeoutDefault = 10 * time.Minute
)

// QueueConfig names a queue a worker takes tasks from.
type QueueConfig struct {
	Name string
	// Weight biases a random queue order per fetch. When every queue's
	// weight is zero, queues are taken in strict order: all tasks of the
	// first before any of the second.
	Weight int
}

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Handlers runs the tasks; required.
	Handlers *Handlers

	// Queues defaults to [{Name: QueueDefault}].
	Queues []QueueConfig

	// Concurrency is how many tasks run at once; zero is ConcurrencyDefault.
	Concurrency int

	// FetchBatchMax caps one fetch; zero is the driver's choice when it
	// makes one (ebbdriver.FetchBatcher), otherwise FetchBatchMaxDefault.
	FetchBatchMax int

	// LeaseDuration and HeartbeatInterval: zero takes the defaults.
	LeaseDuration     time.Duration
	HeartbeatInterval time.Duration

	// DrainTimeout is how long in-flight tasks may run on after shutdown
	// starts before they are cancelled and handed back; zero is
	// DrainTimeoutDefault.
	DrainTimeout time.Duration

	// PollInterval: zero is PollIntervalDefault.
	PollInterval time.Duration

	// RetryPolicy defaults to RetryPolicyDefault.
	RetryPolicy RetryPolicy

	// Middleware wraps every handler, first is outermost.
	Middleware []Middleware

	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// ID names the worker in the registry; defaults to host-pid-random.
	ID string

	// Pool is the autoscaled pool this worker belongs to, if any.
	Pool string

	// DisableMaintenance stops the worker from rescuing expired leases and
	// cleaning up its queues (the control plane does it too).
	DisableMaintenance bool

	// Clock defaults to the wall clock. Everything the worker stores or
	// compares with stored times (fetch, lease expiry, outcomes, retry-at,
	// registry timestamps) reads it, so a test can stop or move time. Timers
	// (poll, heartbeat, drain grace, task timeouts) still run in real time.
	Clock ebbtype.Clock

	// ScaleInGuard is the platform's scale-in protection for this worker's
	// own replica, where the platform picks which replica to stop (ECS task
	// scale-in protection). Setting it turns HoldAfterDrain on. The worker
	// fetches nothing until its first Protect succeeded, renews protection
	// every RenewEvery until a requested drain has left it holding nothing,
	// and then releases it, so the only replicas the platform may pick are
	// drained ones.
	ScaleInGuard ScaleInGuard

	// HoldAfterDrain keeps the worker up after a requested drain (through
	// the broker, as the autoscaler asks, or Drain) has finished, for
	// platforms that own the replica count (an ECS service, a Kubernetes
	// Deployment) and would replace a worker that exits: Run keeps the
	// registry entry alive with Draining and Drained set, fetches nothing,
	// and returns only when its context is cancelled (the platform stopping
	// the replica) or after HoldTimeout. A drain forced by cancelling Run's
	// context is unaffected.
	HoldAfterDrain bool

	// HoldTimeout bounds the hold of HoldAfterDrain, counted from the end of
	// the drain: past it the worker exits anyway, for nothing stopped it.
	// Zero is HoldTimeoutDefault.
	HoldTimeout time.Duration

	// PackDelay packs a fleet's work onto its oldest workers, so the newest
	// run dry and the autoscaler (which drains idle workers, newest first)
	// can remove them: on a wake-up, a worker waits PackDelay times its
	// rank by age among the workers of its queues with room (as the
	// registry shows them) over their number, before it fetches; the
	// oldest fetches at once, and a worker alone never waits. Zero is PackDelayDefault; negative turns packing
	// off (every worker fetches at once, the first to reach the broker
	// wins).
	PackDelay time.Duration
}

// ScaleInGuard protects the worker's replica from being picked by its
// platform on scale-in. Its calls must return within a bounded time and
// should not retry internally: the worker retries, with backoff, and logs
// each failure.
type ScaleInGuard interface {
	// Protect turns protection on, or extends it. Protection should expire
	// by itself, so that a worker that dies without releasing it does not
	// keep its replica (and deploys) blocked.
	Protect(ctx context.Context) error
	// Release turns protection off. The worker calls it once, after a
	// requested drain, and retries it until it succeeds; only then does it
	// report itself drained.
	Release(ctx context.Context) error
	// RenewEvery is how often Protect is repeated while the worker is not
	// drained: well within the protection's expiry, so that a failed
	// renewal can be retried before protection lapses. Zero or less:
	// Protect once (for protection that never expires).
	RenewEvery() time.Duration
}

// Worker fetches tasks from its queues and runs them. Create it with
// NewWorker and start it with Run.
type Worker struct {
	driver   ebbdriver.Driver
	config   WorkerConfig
	logger   *slog.Logger
	clock    ebbtype.Clock
	queues   []string
	weighted bool
	chain    func(h HandlerFunc) HandlerFunc

	sem  chan struct{} // one token per running handler
	wake chan struct{} // poked by notifications
	edge chan struct{} // poked when the worker turns busy or idle

	inflightMu sync.Mutex
	inflight   map[string]*inflightTask // by task id, until the outcome is stored

	handlersWG sync.WaitGroup
	busy       atomic.Int64
	draining   atomic.Bool
	drainReq   chan struct{}
	drainOnce  sync.Once
	fetchSeq   atomic.Uint64
	running    atomic.Bool
	completer  *completer
	startedAt  time.Time
	host       string
	drained    atomic.Bool
	// health: unix nanos of the last heartbeat the broker accepted, and of
	// the heartbeat loop's last pass (see Health).
	beatOK, beatTick atomic.Int64
	stopped          atomic.Bool
	// protected is closed once the guard's first Protect succeeded; nil
	// without a guard.
	protected chan struct{}
	guardMu   sync.Mutex
	guardErr  error
	pack      packing
	// values carries the values of Run's context into every handler's,
	// without its cancellation: shutdown ends handlers explicitly.
	values context.Context
}

type inflightTask struct {
	queue, id, token string
	cancel           context.CancelCauseFunc
	done             bool // handler returned
	// leaseUntil is when the lease last granted runs out; past it another
	// worker may hold the task, so a handler still running is cancelled
	// even when no renewal got through to say so (a partition).
	leaseUntil time.Time
}

// NewWorker checks config and returns a worker ready to Run.
func NewWorker(driver ebbdriver.Driver, config *WorkerConfig) (*Worker, error) {
	if driver == nil {
		return nil, errors.New("ebb: NewWorker needs a driver (ebbredis.Open or ebbsqlite.Open)")
	}
	if config == nil || config.Handlers == nil {
		return nil, errors.New("ebb: NewWorker needs WorkerConfig.Handlers with at least one kind registered")
	}
	c := *config
	if len(c.Queues) == 0 {
		c.Queues = []QueueConfig{{Name: QueueDefault}}
	}
	w := &Worker{driver: driver, logger: c.Logger, wake: make(chan struct{}, 1), edge: make(chan struct{}, 1), drainReq: make(chan struct{}),
		inflight: make(map[string]*inflightTask)}
	seen := map[string]bool{}
	for _, q := range c.Queues {
		if !ValidName(q.Name) {
			return nil, fmt.Errorf("ebb: worker queue %q: use 1–128 characters from [A-Za-z0-9_.:-]", q.Name)
		}
		if q.Weight < 0 {
			return nil, fmt.Errorf("ebb: worker queue %q: weight %d is negative", q.Name, q.Weight)
		}
		if seen[q.Name] {
			return nil, fmt.Errorf("ebb: worker queue %q is listed twice", q.Name)
		}
		seen[q.Name] = true
		w.queues = append(w.queues, q.Name)
		if q.Weight > 0 {
			w.weighted = true
		}
	}
	if w.weighted {
		for _, q := range c.Queues {
			if q.Weight == 0 {
				return nil, fmt.Errorf("ebb: worker queue %q has no weight while others do: give every queue a weight, or none for strict order", q.Name)
			}
		}
	}
	if c.Concurrency < 0 {
		return nil, fmt.Errorf("ebb: worker concurrency %d is negative", c.Concurrency)
	}
	setDefault(&c.Concurrency, ConcurrencyDefault)
	if b, ok := driver.(ebbdriver.FetchBatcher); ok {
		setDefault(&c.FetchBatchMax, b.FetchBatchMax())
	}
	setDefault(&c.FetchBatchMax, FetchBatchMaxDefault)
	setDefault(&c.LeaseDuration, LeaseDurationDefault)
	setDefault(&c.HeartbeatInterval, HeartbeatIntervalDefault)
	setDefault(&c.DrainTimeout, DrainTimeoutDefault)
	setDefault(&c.PollInterval, PollIntervalDefault)
	if c.HoldTimeout < 0 {
		return nil, fmt.Errorf("ebb: worker hold timeout %s is negative (zero is the default, %s)", c.HoldTimeout, HoldTimeoutDefault)
	}
	setDefault(&c.HoldTimeout, HoldTimeoutDefault)
	setDefault(&c.PackDelay, PackDelayDefault)
	w.pack.kick = make(chan struct{}, 1)
	if c.ScaleInGuard != nil {
		// Exiting after a drain would have the platform start a replacement
		// (the reason it protects replicas at all).
		c.HoldAfterDrain = true
		w.protected = make(chan struct{})
	}
	if c.HeartbeatInterval >= c.LeaseDuration {
		return nil, fmt.Errorf("ebb: heartbeat interval %s must be shorter than the lease %s (a third of it is a good choice)", c.HeartbeatInterval, c.LeaseDuration)
	}
	if c.RetryPolicy == nil {
		c.RetryPolicy = RetryPolicyDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ID == "" {
		c.ID = defaultWorkerID()
	} else if !ValidName(c.ID) {
		return nil, fmt.Errorf("ebb: worker id %q: use 1–128 characters from [A-Za-z0-9_.:-]", c.ID)
	}
	c.Clock = clock.Or(c.Clock)
	w.config = c
	w.clock = c.Clock
	w.host, _ = os.Hostname()
	w.logger = c.Logger.With("worker", c.ID)
	w.sem = make(chan struct{}, c.Concurrency)
	mw := c.Middleware
	w.chain = func(h HandlerFunc) HandlerFunc {
		for i := len(mw) - 1; i >= 0; i-- {
			h = mw[i](h)
		}
		return h
	}
	return w, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func defaultWorkerID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r < 128 && ValidName(string(r)) {
			return r
		}
		return '-'
	}, host)
	if len(host) > 64 {
		host = host[:64]
	}
	if host == "" {
		host = "worker"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), strings.ToLower(tid.New()[20:]))
}

// ID is the worker's registry id.
func (w *Worker) ID() string { return w.config.ID }

// Drain asks a running worker to stop fetching, finish what it holds (with no
// deadline) and return from Run, as a broker drain request does (with
// HoldAfterDrain it stays up drained instead, until Run's context ends).
// Cancelling Run's context instead drains with DrainTimeout.
func (w *Worker) Drain() {
	w.drainOnce.Do(func() { close(w.drainReq) })
}

// Run runs the worker until ctx is cancelled or it is asked to drain, then
// drains: it stops fetching, lets in-flight tasks finish (for up to
// DrainTimeout when ctx was cancelled), cancels and hands back the rest
// (their attempt does not count), stores every outcome and deregisters. It returns nil after a clean
// drain; an error only if it could not start (broker unreachable). With
// HoldAfterDrain, a requested drain is followed by the hold (see
// WorkerConfig.HoldAfterDrain) before the worker deregisters.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("ebb: worker is already running")
	}
	w.startedAt = w.clock.Now()
	w.values = withClock(context.WithoutCancel(ctx), w.clock)
	// Background services outlive ctx: the drain still needs leases renewed
	// and outcomes stored after the caller cancelled.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()

	if _, err := w.driver.WorkerHeartbeat(ctx, w.info(false), 3*w.config.HeartbeatInterval); err != nil {
		return fmt.Errorf("ebb: worker cannot register with the %s broker: %w", w.driver.Name(), err)
	}
	w.beatOK.Store(w.clock.Now().UnixNano())
	w.beatTick.Store(w.clock.Now().UnixNano())
	defer w.stopped.Store(true)
	events, err := w.driver.Listen(bg, ebbdriver.ListenParams{Queues: w.queues, WorkerID: w.config.ID})
	if err != nil {
		return fmt.Errorf("ebb: worker cannot subscribe to %s broker notifications: %w", w.driver.Name(), err)
	}
	w.completer = newCompleter(w)
	var services sync.WaitGroup
	stopGuard := func() {}
	if g := w.config.ScaleInGuard; g != nil {
		guardCtx, cancelGuard := context.WithCancel(bg)
		guardDone := make(chan struct{})
		services.Go(func() {
			defer close(guardDone)
			w.guard(guardCtx, g)
		})
		// Waiting for the loop matters: a renewal still in flight when
		// Release runs would turn protection back on behind it.
		stopGuard = func() { cancelGuard(); <-guardDone }
	}
	services.Go(func() { w.completer.run(bg) })
	services.Go(func() { w.listen(bg, events) })
	services.Go(func() { w.heartbeat(bg) })
	services.Go(func() { w.watchLeases(bg) })
	// The first fetch may already need to know whether others claim first.
	w.readPeers(bg)
	services.Go(func() { w.watchPeers(bg) })
	if !w.config.DisableMaintenance {
		// Rescue at least twice per lease so a dead worker's tasks wait at
		// most about 1.5 leases before running again.
		m := maintenance.New(maintenance.Config{Driver: w.driver, Queues: w.queues, Logger: w.logger, Clock: w.clock,
			RescueInterval: min(maintenance.RescueIntervalDefault, w.config.LeaseDuration/2)})
		services.Go(func() { m.Run(bg) })
	}

	fetchCtx, stopFetch := context.WithCancel(bg)
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		if w.protected != nil {
			// A task taken unprotected could be killed with the replica.
			select {
			case <-w.protected:
			case <-fetchCtx.Done():
				return
			}
		}
		w.fetchLoop(fetchCtx, bg)
	}()
	w.logger.Info("worker started", "queues", w.queues, "concurrency", w.config.Concurrency, "broker", w.driver.Name())

	requested := false
	select {
	case <-ctx.Done():
		w.logger.Info("worker draining: shutdown requested", "drain_timeout", w.config.DrainTimeout)
	case <-w.drainReq:
		requested = true
		if w.config.HoldAfterDrain {
			w.logger.Info("worker draining: drain requested; running tasks finish, then the worker waits to be stopped by its platform")
		} else {
			w.logger.Info("worker draining: drain requested; running tasks finish before exit")
		}
	}
	w.draining.Store(true)
	stopFetch()
	<-fetchDone
	w.sendHeartbeat(bg) // tell the registry (and the autoscaler) at once

	w.finishInFlight(ctx, requested)
	w.completer.stop()
	stopGuard()
	if requested && ctx.Err() == nil && w.config.HoldAfterDrain {
		w.hold(ctx, bg)
	}
	stopBG()
	services.Wait()
	derCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.driver.WorkerDeregister(derCtx, w.config.ID); err != nil {
		w.logger.Warn("worker could not deregister; its entry expires on its own", "error", err)
	}
	w.logger.Info("worker stopped")
	return nil
}

// finishInFlight waits up to DrainTimeout for running handlers, then cancels
// the rest and hands their tasks back. A drain that was requested (by the
// autoscaler, through the broker) rather than forced by a signal has no
// deadline: scale-in must never interrupt a task. Should ctx end while such a
// drain waits, the usual DrainTimeout applies from then.
func (w *Worker) finishInFlight(ctx context.Context, requested bool) {
	done := make(chan struct{})
	go func() { w.handlersWG.Wait(); close(done) }()
	if requested {
		select {
		case <-done:
			return
		case <-ctx.Done():
			w.logger.Info("worker draining: shutdown requested during drain", "drain_timeout", w.config.DrainTimeout)
		}
	}
	timer := time.NewTimer(w.config.DrainTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	}
	w.inflightMu.Lock()
	var left []*inflightTask
	for _, t := range w.inflight {
		if !t.done {
			left = append(left, t)
			t.cancel(errHandBack)
		}
	}
	w.inflightMu.Unlock()
	w.logger.Warn("drain timeout: handing back unfinished tasks", "count", len(left), "drain_timeout", w.config.DrainTimeout)
	// Handlers that honour their context return at once and hand their task
	// back themselves; give them a moment, then hand back for those that
	// ignore it (their late completion is fenced off).
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	select {
	case <-done:
		return
	case <-grace.C:
	}
	now := w.clock.Now()
	w.inflightMu.Lock()
	for _, t := range w.inflight {
		if !t.done {
			t.done = true
			w.completer.submit(ebbdriver.Completion{Queue: t.queue, ID: t.id, LeaseToken: t.token, Outcome: ebbdriver.OutcomeHandBack, Now: now})
		}
	}
	w.inflightMu.Unlock()
}

// hold keeps a drained worker up for a platform that owns the replica
// count: exiting would only have it start a replacement. Once the guard's
// protection is released the registry says Drained, and the control plane
// lowers the replica count so that the platform stops this replica (or
// another drained one). The heartbeat service keeps the entry alive
// meanwhile; bg is its context.
func (w *Worker) hold(ctx, bg context.Context) {
	holdCtx, cancel := context.WithTimeout(ctx, w.config.HoldTimeout)
	defer cancel()
	released := w.releaseGuard(holdCtx)
	if released {
		w.drained.Store(true)
		w.sendHeartbeat(bg) // the control plane retires drained workers: tell it at once
		w.logger.Info("worker drained: holding nothing and taking nothing until the platform stops it",
			"hold_timeout", w.config.HoldTimeout)
		<-holdCtx.Done()
	}
	switch {
	case ctx.Err() != nil && released:
		w.logger.Info("worker stopping: shutdown requested while drained")
	case ctx.Err() != nil:
		w.logger.Info("worker stopping: shutdown requested before scale-in protection was released")
	case released:
		w.logger.Warn("hold timeout: the platform did not stop this drained worker; exiting anyway (it holds nothing)",
			"hold_timeout", w.config.HoldTimeout)
	default:
		w.logger.Warn("hold timeout: scale-in protection could not be released; exiting anyway (it holds nothing)",
			"hold_timeout", w.config.HoldTimeout, "error", w.ScaleInGuardErr())
	}
}

func (w *Worker) info(draining bool) ebbtype.WorkerInfo {
	return ebbtype.WorkerInfo{
		ID:          w.config.ID,
		Pool:        w.config.Pool,
		Host:        w.host,
		PID:         os.Getpid(),
		Queues:      w.queues,
		Concurrency: w.config.Concurrency,
		Busy:        int(w.busy.Load()),
		StartedAt:   w.startedAt,
		HeartbeatAt: w.clock.Now(),
		Draining:    draining,
		Drained:     w.drained.Load(),
	}
}
