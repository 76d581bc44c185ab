package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/celery"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/target"
)

// celeryFleet is a pool of Celery workers: counts from the Kombu queues
// and the fleet's events, workers from heartbeats, scale-in by Celery's
// warm shutdown through the pidbox.
type celeryFleet struct {
	p   *pool
	mon *celery.Monitor
	// prefix is what the nodenames of this pool's workers start with: the
	// local target's instance ids (--hostname {id}@%h). Workers started
	// some other way are shown but never scaled.
	prefix string
	// retirer: the platform owns the replica count (an ECS service, a
	// Deployment) and would replace a worker that exits. There a drained
	// worker stops consuming and stays up, and the control plane retires
	// it through the target, whose SIGTERM is Celery's warm shutdown. The
	// pool's workers are then those whose id is one of the target's
	// instances (a task id, a pod name), not a prefix.
	retirer bool
}

func newCeleryFleet(s *Replica, p *pool, pc *config.Pool) (*celeryFleet, error) {
	b, err := celery.OpenBroker(celery.BrokerConfig{URL: pc.Celery.Broker, KeyPrefix: pc.Celery.GlobalKeyPrefix})
	if err != nil {
		return nil, err
	}
	f := &celeryFleet{p: p, prefix: localPoolName(pc.Name) + "-"}
	_, f.retirer = p.target.(target.Retirer)
	f.mon = celery.NewMonitor(celery.MonitorConfig{
		Broker: b, Queues: p.queues, EnableEvents: pc.Celery.EnableEvents,
		OnWork: p.kick, Logger: s.logger.With("pool", pc.Name),
	})
	p.view.Kind = "celery"
	return f, nil
}

func (f *celeryFleet) status(now time.Time) (string, []string) {
	return f.mon.WakeStatus(), f.mon.Warnings(now)
}

func (f *celeryFleet) counts(ctx context.Context, now time.Time, maxAge time.Duration) (poolCounts, error) {
	c, err := f.mon.Counts(ctx, now, maxAge)
	if err != nil {
		return poolCounts{}, err
	}
	out := poolCounts{InFlight: c.InFlight}
	for _, q := range c.Queues {
		out.Queued += q.Queued
	}
	for _, t := range c.OldestSeen {
		out.OldestAge = max(out.OldestAge, now.Sub(t))
	}
	return out, nil
}

func (f *celeryFleet) workers(ctx context.Context, now time.Time, maxAge time.Duration) ([]ebbtype.WorkerInfo, error) {
	var instances map[string]bool
	var holding map[string]int
	if f.retirer {
		instances = f.instances()
		var err error
		if holding, err = f.unackedBy(ctx, now, maxAge); err != nil {
			return nil, err
		}
	}
	var out []ebbtype.WorkerInfo
	for _, w := range f.mon.State().Workers(now) {
		if f.retirer && !instances[w.ID] || !f.retirer && !strings.HasPrefix(w.ID, f.prefix) {
			continue
		}
		// A worker ebb shut down says worker-offline as its warm shutdown
		// begins, and its process exits a moment later: until then (and
		// for at most the stop grace) it is draining, not a new instance.
		asked := !w.ShutdownAt.IsZero() || !w.CancelAt.IsZero()
		askedAt := w.ShutdownAt
		if w.CancelAt.After(askedAt) {
			askedAt = w.CancelAt
		}
		if !w.Alive && (!asked || now.Sub(askedAt) > f.p.cfg.StopGrace) {
			continue
		}
		_, host, _ := strings.Cut(w.Hostname, "@")
		out = append(out, ebbtype.WorkerInfo{
			ID: w.ID, Pool: f.p.name, Host: host, PID: w.PID, Queues: f.p.queues,
			Concurrency: f.p.cfg.Concurrency, Busy: max(w.Active, w.Held),
			StartedAt: w.Online, HeartbeatAt: w.LastBeat, Draining: asked,
			// Drained: it takes nothing new (its cancels are confirmed and
			// settled) and holds nothing: no task running or prefetched
			// by its events, and no message of its in the unacked hash.
			Drained: w.Alive && w.Cancelled && w.Idle() && holding[w.Hostname] == 0,
			Version: "celery " + w.Version,
		})
	}
	return out, nil
}

// instances are the ids of the target's instances at the pool's last
// reconcile: on a platform-owned fleet, only those are the pool's workers.
func (f *celeryFleet) instances() map[string]bool {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	out := make(map[string]bool, len(f.p.view.Instances))
	for _, in := range f.p.view.Instances {
		out[in.ID] = true
	}
	return out
}

// unackedBy counts the messages in the unacked hash by the worker whose
// events last said it took them. A message is acknowledged (removed from
// the hash) only after its task-succeeded event, so a worker whose task
// just finished holds it a moment longer.
func (f *celeryFleet) unackedBy(ctx context.Context, now time.Time, maxAge time.Duration) (map[string]int, error) {
	c, err := f.mon.Counts(ctx, now, maxAge)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, u := range c.Unacked {
		if t, ok := f.mon.State().Task(u.TaskID); ok && t.Worker != "" {
			out[t.Worker]++
		}
	}
	return out, nil
}

// drain retires the worker whose nodename carries id (see Monitor.Retire),
// after checking once more that it holds nothing: a worker that received a
// message since the pass read the state keeps running. On a platform-owned
// fleet it only stops the worker consuming (Monitor.StopConsuming); the
// pool retires it through the target once it reports Drained.
func (f *celeryFleet) drain(ctx context.Context, id string, now time.Time) error {
	for _, w := range f.mon.State().Workers(now) {
		if w.ID != id || !w.Alive {
			continue
		}
		if !w.Idle() {
			return nil
		}
		if f.retirer {
			return f.mon.StopConsuming(ctx, w.Hostname, now)
		}
		return f.mon.Retire(ctx, w.Hostname, now)
	}
	return ebbtype.ErrWorkerNotFound
}

// stopAll retires every live worker of the pool, busy or not, when the
// server stops: each finishes what it runs (Celery's warm shutdown), and
// none loses a message to an open BRPOP (see celery.Monitor.Retire).
//
// A platform-owned fleet is left running, as ebb's own workers are there
// (see pool.shutdown): a worker that exited would be replaced. Workers this
// replica stopped consuming and that the platform has not stopped yet
// consume again, since the next leader cannot tell them from idle ones.
func (f *celeryFleet) stopAll(ctx context.Context) {
	if f.retirer {
		var nodes []string
		for _, w := range f.mon.State().Workers(time.Now()) {
			if w.Alive && !w.CancelAt.IsZero() {
				nodes = append(nodes, w.Hostname)
			}
		}
		if len(nodes) > 0 {
			f.p.s.logger.Info("celery: workers not retired yet consume again as the server stops", "pool", f.p.name, "workers", strings.Join(nodes, ","))
			f.mon.ResumeConsuming(ctx, nodes)
		}
		return
	}
	var nodes []string
	for _, w := range f.mon.State().Workers(time.Now()) {
		if w.Alive && strings.HasPrefix(w.ID, f.prefix) && w.ShutdownAt.IsZero() {
			nodes = append(nodes, w.Hostname)
		}
	}
	f.p.s.logger.Info("celery: retiring workers as the server stops", "pool", f.p.name, "workers", strings.Join(nodes, ","))
	f.mon.RetireAll(ctx, nodes, time.Now())
}

// CeleryPool is a Celery pool's fleet as the dashboard shows it.
type CeleryPool struct {
	Name     string          `json:"name"`
	Queues   []string        `json:"queues"`
	Wake     string          `json:"wake"`
	Warnings []string        `json:"warnings,omitempty"`
	Workers  []celery.Worker `json:"workers"`
}

func (s *Replica) celeryFleets() []*celeryFleet {
	var out []*celeryFleet
	for _, p := range s.pools {
		if f, ok := p.fleet.(*celeryFleet); ok {
			out = append(out, f)
		}
	}
	return out
}

// CeleryPools returns the Celery pools' fleets: workers seen by their
// events (alive or gone within the last hour), newest first.
func (s *Replica) CeleryPools() []CeleryPool {
	now := time.Now()
	var out []CeleryPool
	for _, f := range s.celeryFleets() {
		ws := f.mon.State().Workers(now)
		sort.Slice(ws, func(i, j int) bool { return ws[i].Online.After(ws[j].Online) })
		out = append(out, CeleryPool{Name: f.p.name, Queues: f.p.queues, Wake: f.mon.WakeStatus(),
			Warnings: f.mon.Warnings(now), Workers: ws})
	}
	return out
}

// CeleryWorker returns one Celery worker by nodename.
func (s *Replica) CeleryWorker(nodename string) (celery.Worker, string, bool) {
	for _, f := range s.celeryFleets() {
		if w, ok := f.mon.State().Worker(nodename, time.Now()); ok {
			return w, f.p.name, true
		}
	}
	return celery.Worker{}, "", false
}

// CeleryTasks returns up to limit tasks the Celery fleets' events
// reported, newest first per pool.
func (s *Replica) CeleryTasks(limit int) []celery.Task {
	var out []celery.Task
	for _, f := range s.celeryFleets() {
		out = append(out, f.mon.State().Tasks(limit)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Received.After(out[j].Received) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// ErrCeleryTaskNotFound: neither the events nor a result backend know
// the task.
var ErrCeleryTaskNotFound = errors.New("celery task not found")

// CeleryTask returns what the events said about a task and its record in
// the result backend (nil when the backend has none).
func (s *Replica) CeleryTask(ctx context.Context, id string) (celery.Task, *celery.Result, error) {
	var task celery.Task
	found := false
	var res *celery.Result
	for _, f := range s.celeryFleets() {
		if t, ok := f.mon.State().Task(id); ok && !found {
			task, found = t, true
		}
		if res == nil {
			r, err := f.mon.Broker().Result(ctx, id)
			if err != nil && !errors.Is(err, celery.ErrNoResult) {
				return task, nil, err
			}
			res = r
		}
	}
	if !found && res == nil {
		return task, nil, fmt.Errorf("%w: %s", ErrCeleryTaskNotFound, id)
	}
	if !found {
		task = celery.Task{ID: id, State: res.Status}
	}
	return task, res, nil
}

// CeleryShutdown asks one Celery worker (by nodename) for a warm shutdown.
func (s *Replica) CeleryShutdown(ctx context.Context, nodename string) error {
	for _, f := range s.celeryFleets() {
		if _, ok := f.mon.State().Worker(nodename, time.Now()); ok {
			return f.mon.Retire(ctx, nodename, time.Now())
		}
	}
	return fmt.Errorf("%w: no Celery worker %q", ebbtype.ErrWorkerNotFound, nodename)
}

// CeleryQueueStats returns the Celery pools' queues in ebb's shape
// (queued, in flight, the oldest message's age as first seen by ebb),
// from counts no older than maxAge.
func (s *Replica) CeleryQueueStats(ctx context.Context, maxAge time.Duration) ([]ebbtype.QueueStats, error) {
	var out []ebbtype.QueueStats
	now := time.Now()
	for _, f := range s.celeryFleets() {
		c, err := f.mon.Counts(ctx, now, maxAge)
		if err != nil {
			return nil, err
		}
		held := map[string]int64{}
		for _, u := range c.Unacked {
			held[u.Queue]++
		}
		for i, q := range c.Queues {
			qs := ebbtype.QueueStats{Name: q.Name, Queued: q.Queued, OldestQueuedAt: c.OldestSeen[q.Name]}
			// Events say which worker holds a task, not which queue it came
			// from; a pool with one queue puts all its in-flight there.
			if len(c.Queues) == 1 {
				qs.InFlight = c.InFlight
			} else {
				qs.InFlight = held[q.Name]
				if i == 0 {
					qs.InFlight = max(qs.InFlight, c.InFlight-int64(len(c.Unacked)))
				}
			}
			out = append(out, qs)
		}
	}
	return out, nil
}
