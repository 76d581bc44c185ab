package sim

import (
	"slices"
	"time"

	"github.com/ebbq/ebb/internal/controlplane/policy"
)

// Server defaults, mirrored from internal/config and internal/controlplane
// (a test checks they still match; bench cannot import those packages
// without their YAML dependency).
const (
	ebbReconcileIntervalDefault = 5 * time.Second // config.ReconcileIntervalDefault
	// ebbActiveInterval is pool.loop's cadence while a pool has workers:
	// min(interval, time.Second).
	ebbActiveInterval = time.Second
	// ebbIdlePassesPerRead: at zero, pool.loop reads the worker registry
	// (and so decides) only every sixth timer pass unless queues have work.
	ebbIdlePassesPerRead = 6
	// The start-up the server assumes before it has measured one, per
	// target (controlplane.startupDefaults): the 1 s runs model the local
	// target, the 45 s runs ECS on Fargate.
	ebbStartupDefaultLocal = 1 * time.Second
	ebbStartupDefaultECS   = 60 * time.Second
	// ebbStartupSamples is how many measured start-ups the server keeps per
	// pool; it uses their median.
	ebbStartupSamples = 16
	// The delays before issue 14, when they were fixed defaults: the
	// "before" rows and variants set them explicitly.
	ebbScaleDownDelayFixed = 30 * time.Second
	ebbIdleBeforeZeroFixed = 60 * time.Second
)

// epoch anchors virtual time for the policy, which takes wall-clock times.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// EbbDefaultPolicy is the server's policy for a pool of max workers with
// concurrency c, with the given max wait: its delays derived from the
// start-up the control plane measures (the controller fills Startup in).
func EbbDefaultPolicy(maxWorkers, c int, maxWait time.Duration) policy.Policy {
	return policy.Policy{
		Min: 0, Max: maxWorkers, Concurrency: c,
		MaxWait:        maxWait,
		ScaleDownDelay: policy.Derived,
		IdleBeforeZero: policy.Derived,
	}
}

// EbbFixed is the policy with the fixed delays the server had before it
// derived them from the start-up.
func EbbFixed(p policy.Policy, _ time.Duration) policy.Policy {
	p.ScaleDownDelay, p.IdleBeforeZero = ebbScaleDownDelayFixed, ebbIdleBeforeZeroFixed
	return p
}

// startupDefault is the server's start-up estimate before a measurement,
// for the target a start-up delay models.
func startupDefault(startup time.Duration) time.Duration {
	if startup >= 10*time.Second {
		return ebbStartupDefaultECS
	}
	return ebbStartupDefaultLocal
}

// ebbCtl drives policy.Decide the way internal/controlplane/pool.go does:
// a reconcile on every enqueue notification (coalesced like pool.kickCh),
// and a timer that every reconcile resets — every second while the pool has
// workers or wants some, every reconcile interval at zero.
type ebbCtl struct {
	policy   policy.Policy
	interval time.Duration
	// startups are the measured launch → ready times, as pool.go keeps
	// them; measured marks the workers already counted.
	startups []time.Duration
	measured map[*worker]bool
	fallback time.Duration

	history                  policy.History
	viewCurrent, viewDesired int
	timerGen                 int
	kickPending              bool
	active                   bool
	idlePasses               int
	actions                  int
}

func newEbb(p policy.Policy, startup time.Duration) *ebbCtl {
	return &ebbCtl{policy: p, interval: ebbReconcileIntervalDefault, measured: map[*worker]bool{}, fallback: startupDefault(startup)}
}

// startup is the median of the measured start-ups, or the default.
func (c *ebbCtl) startup() time.Duration {
	if len(c.startups) == 0 {
		return c.fallback
	}
	s := slices.Clone(c.startups)
	slices.Sort(s)
	return s[len(s)/2]
}

func (c *ebbCtl) start(f *fleet) {
	c.reconcile(f, true)
	c.schedule(f)
}

func (c *ebbCtl) enqueued(f *fleet) {
	if c.kickPending {
		return
	}
	c.kickPending = true
	f.at(f.now, func() {
		c.kickPending = false
		c.pass(f, true)
	})
}

// pass is one turn of pool.loop after its wait ended.
func (c *ebbCtl) pass(f *fleet, kicked bool) {
	c.idlePasses++
	withWorkers := c.active || kicked || c.idlePasses%ebbIdlePassesPerRead == 0
	if withWorkers {
		c.idlePasses = 0
	}
	c.reconcile(f, withWorkers)
	c.schedule(f)
}

func (c *ebbCtl) reconcile(f *fleet, withWorkers bool) {
	if !withWorkers && f.queued()+f.inflight == 0 {
		return
	}

	// The metrics pool.reconcile builds: queued (with due scheduled tasks;
	// traces have none), in flight, the oldest queued age, and workers split
	// into busy, idle, draining and starting.
	var m policy.Metrics
	m.Queued = int64(f.queued())
	m.InFlight = int64(f.inflight)
	if at, ok := f.oldestVisible(); ok {
		m.OldestAge = f.now - at
	}
	var idle []*worker
	busy, starting := 0, 0
	for _, w := range f.live {
		if w.state != wStarting && !c.measured[w] && w.launchedAt < w.readyAt {
			c.measured[w] = true
			c.startups = append(c.startups, w.readyAt-w.launchedAt)
			if len(c.startups) > ebbStartupSamples {
				c.startups = c.startups[1:]
			}
		}
		switch {
		case w.state == wStarting:
			starting++
		case w.state != wReady: // draining: no longer counted
		case len(w.tasks) > 0:
			busy++
		default:
			idle = append(idle, w)
		}
	}
	m.Current = busy + len(idle) + starting
	m.Busy, m.Starting = busy, starting
	p := c.policy
	p.Startup = c.startup()
	var d policy.Decision
	d, c.history = policy.Decide(epoch.Add(f.now), m, c.history, p)
	c.viewCurrent, c.viewDesired = m.Current, d.Desired

	switch d.Action {
	case policy.ActionUp:
		f.launch(d.Desired - m.Current)
		c.actions++
	case policy.ActionDown:
		// pool.scaleDown: only idle workers, newest first.
		n := min(m.Current-d.Desired, len(idle))
		if n > 0 {
			slices.SortStableFunc(idle, func(a, b *worker) int { return int(b.readyAt - a.readyAt) })
			for _, w := range idle[:n] {
				f.drain(w)
			}
			c.actions++
		}
	}
}

// schedule arms the loop's timer; any pass, kicked or timed, re-arms it.
func (c *ebbCtl) schedule(f *fleet) {
	c.timerGen++
	gen := c.timerGen
	c.active = c.viewCurrent > 0 || c.viewDesired > 0 || len(f.live) > 0
	wait := c.interval
	if c.active {
		wait = min(c.interval, ebbActiveInterval)
	}
	f.at(f.now+wait, func() {
		if gen == c.timerGen {
			c.pass(f, false)
		}
	})
}
