package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/controlplane/policy"
	"github.com/ebbq/ebb/internal/target"
)

// pool is the autoscaler's state for one configured pool.
type pool struct {
	s      *Replica
	cfg    *config.Pool
	name   string
	queues []string
	target target.Target
	fleet  fleet // where counts and workers come from
	policy policy.Policy
	kickCh chan struct{}
	// timeline is safe for concurrent use on its own.
	timeline *timeline

	mu       sync.Mutex
	history  policy.History
	launched map[string]bool // instance ids this replica's target started
	// launchedAt holds when each launched instance was started until it
	// registers; startups are the last measured launch → registered times.
	launchedAt map[string]time.Time
	startups   []time.Duration
	view       PoolView // last reconcile, for the API and metrics
}

// startupSamples is how many measured start-ups a pool keeps; their median
// is its estimate, so one slow image pull does not move it far.
const startupSamples = 16

// startupDefaults are a target's start-up before the pool has measured one:
// a local process starts in well under a second, a pod takes its scheduling
// and image pull, a Fargate task "closer to a minute" (Judoscale's ECS
// tuning notes). Erring long keeps workers idle a little longer until the
// first launch measures the real figure.
var startupDefaults = map[string]time.Duration{
	"local":      time.Second,
	"kubernetes": 30 * time.Second,
	"ecs":        60 * time.Second,
}

// startupDefaultOther is the default of any other target.
const startupDefaultOther = 30 * time.Second

// PoolView is a pool as the API shows it: its bounds, its last reconcile and
// its instances.
type PoolView struct {
	Name     string   `json:"name"`
	Queues   []string `json:"queues"`
	Target   string   `json:"target"`
	Min      int      `json:"min"`
	Max      int      `json:"max"`
	Current  int      `json:"current"`
	Desired  int      `json:"desired"`
	Busy     int      `json:"busy"`
	Idle     int      `json:"idle"`
	Draining int      `json:"draining"`
	Starting int      `json:"starting"`
	// StartupS is the pool's start-up time (launch → registered) in
	// seconds: the median of the last StartupSamples measured, or the
	// target's default while StartupSamples is 0. ScaleDownDelayS and
	// IdleBeforeZeroS are the delays in force, derived from it unless the
	// config sets them.
	StartupS        float64           `json:"startup_s"`
	StartupSamples  int               `json:"startup_samples"`
	ScaleDownDelayS float64           `json:"scale_down_delay_s"`
	IdleBeforeZeroS float64           `json:"idle_before_zero_s"`
	Reason          string            `json:"reason,omitempty"`
	Instances       []target.Instance `json:"instances"`
	UpdatedAt       time.Time         `json:"updated_at,omitzero"`
	// TargetStatus is the platform's side as the target reports it, and
	// TargetError its last unresolved failure (targets that implement
	// target.Reporter).
	TargetStatus string `json:"target_status,omitempty"`
	TargetError  string `json:"target_error,omitempty"`
	// Kind is "celery" for a pool of Celery workers, "" for ebb's own;
	// FleetStatus and Warnings are such a fleet's (how it is watched, and
	// observed settings that make scale-in unsafe).
	Kind        string   `json:"kind,omitempty"`
	FleetStatus string   `json:"fleet_status,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
}

// DecisionInputs are what a decision saw, stored with it as its Inputs.
type DecisionInputs struct {
	Queued      int64   `json:"queued"`
	InFlight    int64   `json:"in_flight"`
	OldestAgeS  float64 `json:"oldest_age_s"`
	Current     int     `json:"current"`
	Busy        int     `json:"busy"`
	Idle        int     `json:"idle"`
	Draining    int     `json:"draining"`
	Starting    int     `json:"starting"`
	Desired     int     `json:"desired"`
	Concurrency int     `json:"concurrency"`
}

func newPool(s *Replica, pc *config.Pool, t target.Target) *pool {
	var qs []string
	for _, q := range pc.QueueConfigs() {
		qs = append(qs, q.Name)
	}
	p := &pool{
		s: s, cfg: pc, name: pc.Name, queues: qs, target: t,
		kickCh:     make(chan struct{}, 1),
		timeline:   newTimeline(),
		launched:   map[string]bool{},
		launchedAt: map[string]time.Time{},
		policy: policy.Policy{
			Min: pc.Min, Max: pc.Max, Concurrency: pc.Concurrency,
			BacklogPerWorker: pc.Policy.BacklogPerWorker,
			MaxWait:          pc.Policy.MaxWait,
			ScaleDownDelay:   derived(pc.Policy.ScaleDownDelay),
			IdleBeforeZero:   derived(pc.Policy.IdleBeforeZero),
			MaxStep:          pc.Policy.MaxStep,
		},
	}
	p.view = PoolView{Name: pc.Name, Queues: qs, Target: t.Name(), Min: pc.Min, Max: pc.Max}
	p.fleet = ebbFleet{p}
	return p
}

// derived maps the config's "derive it" to the policy's.
func derived(d time.Duration) time.Duration {
	if d == config.DelayDerived {
		return policy.Derived
	}
	return d
}

// startup is the pool's start-up estimate and how many measurements it
// rests on; p.mu must be held.
func (p *pool) startup() (time.Duration, int) {
	if len(p.startups) == 0 {
		if d, ok := startupDefaults[p.target.Name()]; ok {
			return d, 0
		}
		return startupDefaultOther, 0
	}
	s := append([]time.Duration(nil), p.startups...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], len(p.startups)
}

// measureStartup records a launched instance's first registration: from
// launch to the worker's own start (StartedAt, read from its clock when it
// registers), or to now when that is missing or earlier than the launch (a
// clock behind the server's); p.mu must be held.
func (p *pool) measureStartup(w ebbtype.WorkerInfo, now time.Time) {
	at, ok := p.launchedAt[w.ID]
	if !ok {
		return
	}
	delete(p.launchedAt, w.ID)
	d := now.Sub(at)
	if !w.StartedAt.IsZero() && !w.StartedAt.Before(at) && w.StartedAt.Before(now) {
		d = w.StartedAt.Sub(at)
	}
	if d < 0 {
		return
	}
	p.startups = append(p.startups, d)
	if len(p.startups) > startupSamples {
		p.startups = p.startups[len(p.startups)-startupSamples:]
	}
}

// effective is the policy with the start-up in force; p.mu must be held.
func (p *pool) effective() policy.Policy {
	pol := p.policy
	pol.Startup, _ = p.startup()
	return pol
}

func (p *pool) kick() {
	select {
	case p.kickCh <- struct{}{}:
	default:
	}
}

// resetHistory makes the next reconcile resume from the decision log (see
// resume): a term starts without the memory of the term before it.
func (p *pool) resetHistory() {
	p.mu.Lock()
	p.history = policy.History{}
	p.mu.Unlock()
}

// resume is the history a new term starts from: the pool's sizes decided
// within the scale-down delay, by whichever leader decided them, and its
// size now (see policy.Resume). A log that cannot be read costs only the
// predecessor's sizes; the current one still holds for the delay.
func (p *pool) resume(ctx context.Context, now time.Time, current int) policy.History {
	var recent []policy.Observed
	ds, err := p.s.drv.DecisionList(ctx, p.name, 64)
	if err != nil {
		p.warn(ctx, "autoscaler: cannot read the decision log; resuming from the current size alone", err)
	}
	p.mu.Lock()
	window := p.effective().Resolve().ScaleDownDelay
	p.mu.Unlock()
	for _, d := range ds {
		if now.Sub(d.At) <= window {
			recent = append(recent, policy.Observed{At: d.At, Size: d.To})
		}
	}
	return policy.Resume(now, current, recent)
}

// loop reconciles the pool on notifications and on a timer: every second
// while it has workers (the time-based rules need it), every reconcile
// interval while it is at zero (a backstop for lost notifications).
//
// An idle pool at zero is cheap: its backstop reuses any queue counts read
// within the interval (by another pool or maintenance) and reads the worker
// registry only every sixth pass, so a quiet control plane sends the broker
// well under one command per second.
func (p *pool) loop(ctx context.Context) {
	p.reconcile(ctx, 0, true)
	idlePasses := 0
	for {
		interval := p.s.cfg.Autoscaler.ReconcileInterval
		p.mu.Lock()
		active := p.view.Current > 0 || p.view.Desired > 0 || len(p.launched) > 0
		p.mu.Unlock()
		// At zero, a timer pass may reuse counts up to two intervals old: a
		// lost notification then waits at most that long, and an idle
		// server stays under one broker command per second.
		wait, maxAge := interval, 2*interval+time.Second
		if active {
			wait, maxAge = min(interval, time.Second), 500*time.Millisecond
		}
		t := time.NewTimer(wait)
		kicked := false
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.kickCh:
			kicked, maxAge = true, 0
		case <-t.C:
		}
		t.Stop()
		idlePasses++
		withWorkers := active || kicked || idlePasses%6 == 0
		if withWorkers {
			idlePasses = 0
		}
		p.reconcile(ctx, maxAge, withWorkers)
	}
}

// reconcile reads the pool's metrics, asks the policy, records the decision
// (fenced by the leader term) and only then applies it.
func (p *pool) reconcile(ctx context.Context, maxAge time.Duration, withWorkers bool) {
	now := p.s.clock.Now()
	counts, err := p.fleet.counts(ctx, now, maxAge)
	if err != nil {
		p.warn(ctx, "autoscaler: cannot read queue counts", err)
		return
	}
	// An idle pool at zero needs the registry only if its queues have
	// work; otherwise skip the read (see loop).
	if !withWorkers && !counts.work() {
		return
	}
	// The registry lags by up to a second; a read that recent is as good
	// as a new one.
	workers, err := p.fleet.workers(ctx, now, min(maxAge, 500*time.Millisecond))
	if err != nil {
		p.warn(ctx, "autoscaler: cannot read the worker registry", err)
		return
	}
	instances, err := p.target.Instances(ctx)
	if err != nil {
		p.warn(ctx, "autoscaler: cannot list the target's instances", err)
		p.mu.Lock()
		p.view.TargetError, p.view.UpdatedAt = err.Error(), now
		p.mu.Unlock()
		return
	}

	m := policy.Metrics{Queued: counts.Queued, InFlight: counts.InFlight, OldestAge: counts.OldestAge}
	live := map[string]target.Instance{}
	for _, in := range instances {
		if in.State != target.StateStopping {
			live[in.ID] = in
		}
	}
	var idle, busy []ebbtype.WorkerInfo
	var drained []string
	registered := map[string]bool{}
	in := DecisionInputs{Concurrency: p.cfg.Concurrency}
	p.mu.Lock()
	for _, w := range workers {
		if w.Pool != p.name {
			continue
		}
		// A worker this replica launched whose process is gone has crashed or
		// been killed; its registry entry lingers until its TTL, but it serves
		// nobody.
		if p.launched[w.ID] {
			if _, ok := live[w.ID]; !ok {
				continue
			}
		}
		registered[w.ID] = true
		p.measureStartup(w, now)
		switch {
		case w.Draining:
			in.Draining++
			// Only a drained worker the platform still runs is retired:
			// one already stopping lingers in the registry for a few
			// passes, and asking for it again costs the target its calls.
			if _, running := live[w.ID]; w.Drained && running {
				drained = append(drained, w.ID)
			}
		case w.Busy > 0:
			in.Busy++
			busy = append(busy, w)
		default:
			in.Idle++
			idle = append(idle, w)
		}
	}
	for id := range live {
		if !registered[id] {
			in.Starting++
		}
	}
	if m.InFlight == 0 && in.Busy > 0 {
		// The registry's busy counts lag by up to a second; the queue counts
		// are exact. Nothing in flight means nobody is busy.
		idle = append(idle, busy...)
		in.Idle += in.Busy
		in.Busy, busy = 0, nil
	}
	for id := range p.launched {
		if _, ok := live[id]; !ok {
			delete(p.launched, id)
			delete(p.launchedAt, id)
		}
	}
	m.Current = in.Busy + in.Idle + in.Starting
	m.Busy, m.Starting = in.Busy, in.Starting
	history := p.history
	p.mu.Unlock()
	if history.Fresh() {
		history = p.resume(ctx, now, m.Current)
	}
	p.mu.Lock()
	pol := p.effective()
	var d policy.Decision
	d, p.history = policy.Decide(now, m, history, pol)
	startup, samples := p.startup()
	resolved := pol.Resolve()
	p.view.StartupS, p.view.StartupSamples = startup.Seconds(), samples
	p.view.ScaleDownDelayS, p.view.IdleBeforeZeroS = resolved.ScaleDownDelay.Seconds(), resolved.IdleBeforeZero.Seconds()
	in.Queued, in.InFlight, in.OldestAgeS, in.Current, in.Desired = m.Queued, m.InFlight, m.OldestAge.Seconds(), m.Current, d.Desired
	p.view.Current, p.view.Desired, p.view.Busy, p.view.Idle = m.Current, d.Desired, in.Busy, in.Idle
	p.view.Draining, p.view.Starting, p.view.Reason, p.view.UpdatedAt = in.Draining, in.Starting, d.Reason, now
	p.view.Instances = instances
	if r, ok := p.target.(target.Reporter); ok {
		p.view.TargetStatus, p.view.TargetError = r.Status(), ""
		if err := r.LastError(); err != nil {
			p.view.TargetError = err.Error()
		}
	}
	if r, ok := p.fleet.(fleetReporter); ok {
		p.view.Kind = "celery"
		p.view.FleetStatus, p.view.Warnings = r.status(now)
	}
	p.mu.Unlock()
	p.timeline.add(Point{At: now, Queued: m.Queued, InFlight: m.InFlight, Workers: m.Current, Busy: in.Busy, Desired: d.Desired})

	var busyIDs []string
	for _, w := range busy {
		busyIDs = append(busyIDs, w.ID)
	}
	if g, ok := p.target.(target.Guard); ok && g.Guarding() {
		busyIDs = busyIDs[:0]
		for id := range live {
			if !slices.Contains(drained, id) {
				busyIDs = append(busyIDs, id)
			}
		}
	}
	if err := p.target.Protect(ctx, busyIDs); err != nil {
		p.warn(ctx, "autoscaler: cannot protect busy instances", err)
	}
	if f, ok := p.target.(target.Follower); ok && f.Following() {
		return
	}
	p.retire(ctx, drained)
	switch d.Action {
	case policy.ActionUp:
		p.scaleUp(ctx, now, d, in)
	case policy.ActionDown:
		p.scaleDown(ctx, now, d, in, idle)
	}
}

// retire finishes scale-ins on targets whose platform stops replicas of its
// own choosing: workers that were asked to drain (by a fenced decision) and
// report Drained hold nothing and have released their protection, so
// lowering the replica count now lets the platform stop only such a one.
func (p *pool) retire(ctx context.Context, drained []string) {
	r, ok := p.target.(target.Retirer)
	if !ok || len(drained) == 0 {
		return
	}
	if err := r.Retire(ctx, drained); err != nil {
		p.warn(ctx, "autoscaler: cannot lower the replica count for drained workers", err)
	}
}

func (p *pool) serves(queue string) bool {
	for _, q := range p.queues {
		if q == queue {
			return true
		}
	}
	return false
}

func (p *pool) scaleUp(ctx context.Context, now time.Time, d policy.Decision, in DecisionInputs) {
	if !p.record(ctx, now, d, in, nil) {
		return
	}
	launchAt := p.s.clock.Now()
	ids, err := p.target.Launch(ctx, d.Desired-in.Current)
	p.mu.Lock()
	for _, id := range ids {
		p.launched[id] = true
		p.launchedAt[id] = launchAt
	}
	p.mu.Unlock()
	if err != nil {
		p.warn(ctx, "autoscaler: launching workers failed", err)
	}
	p.s.logger.Info("scaled up", "pool", p.name, "launched", len(ids), "reason", p.name+": "+d.Reason)
}

// scaleDown asks idle workers, and only idle workers, to drain. A worker that
// picks up a task between the registry read and the request still finishes
// it: a requested drain has no deadline.
func (p *pool) scaleDown(ctx context.Context, now time.Time, d policy.Decision, in DecisionInputs, idle []ebbtype.WorkerInfo) {
	n := min(in.Current-d.Desired, len(idle))
	if n <= 0 {
		return
	}
	// Newest first: the longest-running workers have the warmest caches and
	// the most predictable memory.
	sort.Slice(idle, func(i, j int) bool { return idle[i].StartedAt.After(idle[j].StartedAt) })
	var ids []string
	for _, w := range idle[:n] {
		ids = append(ids, w.ID)
	}
	d.Desired = in.Current - n
	if !p.record(ctx, now, d, in, ids) {
		return
	}
	for _, id := range ids {
		if err := p.fleet.drain(ctx, id, now); err != nil && !errors.Is(err, ebbtype.ErrWorkerNotFound) {
			p.warn(ctx, "autoscaler: drain request failed", err)
		}
	}
	p.s.logger.Info("scaled down", "pool", p.name, "draining", strings.Join(ids, ","), "reason", p.name+": "+d.Reason)
}

// record stores the decision in the fenced log; false means this replica no
// longer leads and must not apply it.
func (p *pool) record(ctx context.Context, now time.Time, d policy.Decision, in DecisionInputs, drained []string) bool {
	inputs, _ := json.Marshal(in)
	rec := &ebbtype.Decision{
		Pool: p.name, At: now, Term: p.s.term.Load(), LeaderID: p.s.id,
		From: in.Current, To: d.Desired, Action: string(d.Action), Reason: p.name + ": " + d.Reason,
		Inputs: inputs, Drained: drained,
	}
	if err := p.s.drv.DecisionAppend(ctx, LeaderName, rec); err != nil {
		if errors.Is(err, ebbdriver.ErrNotLeader) {
			p.s.logger.Warn("decision not applied: this replica no longer leads", "pool", p.name)
		} else {
			p.warn(ctx, "autoscaler: cannot record decision; not applying it", err)
		}
		return false
	}
	p.s.counters.decision(p.name, string(d.Action))
	return true
}

func (p *pool) warn(ctx context.Context, msg string, err error) {
	if ctx.Err() == nil {
		p.s.logger.Warn(msg, "pool", p.name, "error", err)
	}
}

// shutdown drains the workers this replica launched and stops its target.
// A platform-owned fleet (target.Retirer) is left running: it is not this
// replica's to stop, and the next leader takes it over.
func (p *pool) shutdown(ctx context.Context) {
	if st, ok := p.fleet.(fleetStopper); ok {
		st.stopAll(ctx)
	} else if _, platformOwned := p.target.(target.Retirer); !platformOwned {
		if instances, err := p.target.Instances(ctx); err == nil {
			for _, in := range instances {
				_ = p.fleet.drain(ctx, in.ID, p.s.clock.Now())
			}
		}
	}
	if err := p.target.Shutdown(ctx); err != nil {
		p.s.logger.Warn("stopping workers", "pool", p.name, "error", err)
	}
}

func (p *pool) snapshot() PoolView {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.view
	v.Instances = append([]target.Instance(nil), p.view.Instances...)
	return v
}
