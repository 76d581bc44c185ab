package sim

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

type event struct {
	at  time.Duration
	seq uint64 // ties run in scheduling order, so runs are deterministic
	fn  func()
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

type wstate int

const (
	wStarting    wstate = iota
	wReady              // fetching when it has free slots
	wDraining           // ebb drain: no more fetches, exits when empty
	wTerminating        // platform SIGTERM: no more fetches, killed at grace end
	wExited
)

type worker struct {
	id         int
	launchedAt time.Duration
	readyAt    time.Duration
	exitedAt   time.Duration
	state      wstate
	tasks      []*task
}

type task struct {
	Task
	visibleAt  time.Duration // of the current delivery
	startedAt  time.Duration // of the current or last attempt
	receivedAt time.Duration
	token      int // bumps on every start and interruption, voiding stale completions
	deliveries int
	w          *worker
	done       bool
}

// fleetConfig is what the platform and the workers are like.
type fleetConfig struct {
	Startup     time.Duration
	Concurrency int
	// Grace is SIGTERM → SIGKILL for a terminated replica.
	Grace time.Duration
	// VisibilityTimeout: an interrupted task is visible again this long
	// after it was received.
	VisibilityTimeout time.Duration
	MaxDeliveries     int
	// Pack makes the oldest worker with room fetch first, as ebb's workers
	// do (WorkerConfig.PackDelay): first-fit by age, which fills the oldest
	// and empties the newest.
	Pack bool
}

// controller is a scaling policy wired to the fleet: it reads what its real
// counterpart can read and acts through launch/drain/terminate.
type controller interface {
	start(f *fleet)
	// enqueued runs after a task became visible (arrival or redelivery).
	enqueued(f *fleet)
}

// Point is one step of a run's timeline: the state from At until the next
// point.
type Point struct {
	At       time.Duration
	Queued   int // visible, waiting for a slot
	InFlight int
	Workers  int // launched and not exited, starting and stopping included
}

type fleet struct {
	cfg      fleetConfig
	ctl      controller
	now      time.Duration
	events   eventHeap
	seq      uint64
	rng      *rand.Rand // platform choices (ECS victims)
	fetchRng *rand.Rand // which worker wins a fetch race

	tasks   []*task
	queue   []*task // visible tasks in visibility order; head at qhead
	qhead   int
	live    []*worker
	nextID  int
	workers []*worker

	inflight, resolved, interrupted int
	maxWorkers, launches            int

	// integrals for the cost decomposition
	lastAcc                                                  time.Duration
	startupNs, busyNs, idleEmptyNs, idleLoadedNs, stoppingNs float64

	record     bool
	timeline   []Point
	interrupts []time.Duration
}

func newFleet(tr Trace, cfg fleetConfig, ctl controller, seed uint64, record bool) *fleet {
	f := &fleet{cfg: cfg, ctl: ctl, rng: newRand(seed, 99), fetchRng: newRand(seed, 98), record: record}
	for _, t := range tr.Tasks {
		t := &task{Task: t}
		f.tasks = append(f.tasks, t)
		f.at(t.Arrival, func() { f.enqueue(t) })
	}
	return f
}

func (f *fleet) at(t time.Duration, fn func()) {
	f.seq++
	heap.Push(&f.events, &event{at: t, seq: f.seq, fn: fn})
}

func (f *fleet) queued() int { return len(f.queue) - f.qhead }

// oldestVisible is when the oldest queued task became visible.
func (f *fleet) oldestVisible() (time.Duration, bool) {
	if f.queued() == 0 {
		return 0, false
	}
	return f.queue[f.qhead].visibleAt, true
}

func (f *fleet) enqueue(t *task) {
	t.visibleAt = f.now
	f.queue = append(f.queue, t)
	f.dispatch()
	f.ctl.enqueued(f)
}

// dispatch hands queued tasks to free slots. An enqueue wakes every waiting
// fetcher and the first to reach the broker wins, so without packing the
// winner is a random worker with room; it claims as many tasks as it has
// free slots. Pack instead hands them to the oldest worker with room (live
// is in launch order), the one whose fetch the others wait for.
func (f *fleet) dispatch() {
	for f.queued() > 0 {
		var best *worker
		seen := 0
		for _, w := range f.live {
			if w.state != wReady || len(w.tasks) >= f.cfg.Concurrency {
				continue
			}
			seen++
			switch {
			case best == nil:
				best = w
			case f.cfg.Pack:
			case f.fetchRng.IntN(seen) == 0: // reservoir: uniform among those seen
				best = w
			}
		}
		if best == nil {
			return
		}
		n := min(f.cfg.Concurrency-len(best.tasks), f.queued())
		for range n {
			t := f.queue[f.qhead]
			f.queue[f.qhead] = nil
			f.qhead++
			f.start(best, t)
		}
		if f.qhead > 1024 && f.qhead*2 > len(f.queue) {
			f.queue = append([]*task(nil), f.queue[f.qhead:]...)
			f.qhead = 0
		}
	}
}

func (f *fleet) start(w *worker, t *task) {
	t.w = w
	t.startedAt, t.receivedAt = f.now, f.now
	t.deliveries++
	t.token++
	tok := t.token
	w.tasks = append(w.tasks, t)
	f.inflight++
	f.at(f.now+t.Duration, func() { f.complete(t, tok) })
}

func (f *fleet) complete(t *task, tok int) {
	if t.token != tok || t.w == nil {
		return
	}
	w := t.w
	w.tasks = slices.DeleteFunc(w.tasks, func(x *task) bool { return x == t })
	t.w, t.done = nil, true
	f.inflight--
	f.resolved++
	if (w.state == wDraining || w.state == wTerminating) && len(w.tasks) == 0 {
		f.exit(w)
	}
	f.dispatch()
}

// launch starts n workers that become ready after the start-up delay.
func (f *fleet) launch(n int) {
	for range n {
		w := &worker{id: f.nextID, launchedAt: f.now, state: wStarting}
		f.nextID++
		f.launches++
		f.live = append(f.live, w)
		f.workers = append(f.workers, w)
		f.at(f.now+f.cfg.Startup, func() {
			if w.state != wStarting {
				return
			}
			w.state, w.readyAt = wReady, f.now
			f.dispatch()
		})
	}
	f.maxWorkers = max(f.maxWorkers, len(f.live))
}

// launchWarm adds n workers that started Startup before now and are ready:
// an always-on fleet that was up before the trace began.
func (f *fleet) launchWarm(n int) {
	for range n {
		w := &worker{id: f.nextID, launchedAt: f.now - f.cfg.Startup, readyAt: f.now, state: wReady}
		f.nextID++
		f.live = append(f.live, w)
		f.workers = append(f.workers, w)
		f.startupNs += float64(f.cfg.Startup)
	}
	f.maxWorkers = max(f.maxWorkers, len(f.live))
}

// drain is ebb's scale-in: the worker stops fetching and exits once its
// tasks are done; nothing is cut short.
func (f *fleet) drain(w *worker) {
	if w.state != wReady {
		return
	}
	if len(w.tasks) == 0 {
		f.exit(w)
		return
	}
	w.state = wDraining
}

// terminate is a platform's scale-in: SIGTERM, then SIGKILL after the
// grace period, whatever the worker runs.
func (f *fleet) terminate(w *worker) {
	switch w.state {
	case wStarting:
		f.exit(w)
		return
	case wReady, wDraining:
	default:
		return
	}
	w.state = wTerminating
	if len(w.tasks) == 0 {
		f.exit(w)
		return
	}
	f.at(f.now+f.cfg.Grace, func() {
		if w.state != wTerminating {
			return
		}
		for _, t := range w.tasks {
			f.interrupt(t)
		}
		w.tasks = nil
		f.exit(w)
	})
}

func (f *fleet) interrupt(t *task) {
	f.interrupted++
	if f.record {
		f.interrupts = append(f.interrupts, f.now)
	}
	f.inflight--
	t.w = nil
	t.token++
	if t.deliveries >= f.cfg.MaxDeliveries {
		f.resolved++ // dead-lettered
		return
	}
	f.at(max(f.now, t.receivedAt+f.cfg.VisibilityTimeout), func() { f.enqueue(t) })
}

func (f *fleet) exit(w *worker) {
	w.state, w.exitedAt = wExited, f.now
	f.live = slices.DeleteFunc(f.live, func(x *worker) bool { return x == w })
}

// serving are the workers a platform counts as its replicas: launched and
// not being stopped.
func (f *fleet) serving() []*worker {
	var out []*worker
	for _, w := range f.live {
		if w.state == wStarting || w.state == wReady {
			out = append(out, w)
		}
	}
	return out
}

// accumulate integrates the fleet's state since the last event.
func (f *fleet) accumulate(to time.Duration) {
	dt := float64(to - f.lastAcc)
	f.lastAcc = to
	if dt <= 0 {
		return
	}
	load := f.queued() + f.inflight
	for _, w := range f.live {
		switch w.state {
		case wStarting:
			f.startupNs += dt
		case wReady:
			switch {
			case len(w.tasks) > 0:
				f.busyNs += dt
			case load == 0:
				f.idleEmptyNs += dt
			default:
				f.idleLoadedNs += dt
			}
		default:
			f.stoppingNs += dt
		}
	}
}

func (f *fleet) snapshot() {
	p := Point{At: f.now, Queued: f.queued(), InFlight: f.inflight, Workers: len(f.live)}
	if n := len(f.timeline); n > 0 {
		last := f.timeline[n-1]
		if last.Queued == p.Queued && last.InFlight == p.InFlight && last.Workers == p.Workers {
			return
		}
		if last.At == p.At {
			f.timeline[n-1] = p
			return
		}
	}
	f.timeline = append(f.timeline, p)
}

// run processes events until every task is resolved and the fleet has
// settled (done reports it), or until the hard stop.
func (f *fleet) run(done func() bool, hardStop time.Duration) {
	f.ctl.start(f)
	for f.events.Len() > 0 {
		e := heap.Pop(&f.events).(*event)
		if e.at > hardStop {
			break
		}
		f.accumulate(e.at)
		f.now = e.at
		e.fn()
		if f.record {
			f.snapshot()
		}
		if done() {
			break
		}
	}
	if f.now < hardStop && !done() {
		f.accumulate(hardStop)
		f.now = hardStop
	}
	for _, w := range f.live {
		w.exitedAt = f.now
	}
}

// waits returns each task's wait in seconds, +Inf for tasks that never
// completed.
func (f *fleet) waits() []float64 {
	out := make([]float64, len(f.tasks))
	for i, t := range f.tasks {
		if t.done {
			out[i] = (t.startedAt - t.Arrival).Seconds()
		} else {
			out[i] = math.Inf(1)
		}
	}
	return out
}

func (f *fleet) workerSeconds() float64 {
	var ns time.Duration
	for _, w := range f.workers {
		ns += w.exitedAt - w.launchedAt
	}
	return ns.Seconds()
}
