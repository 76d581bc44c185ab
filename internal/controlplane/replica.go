// Package controlplane is the always-on part of `ebb server`: its replicas
// elect one leader through the broker, and the leader runs maintenance for
// every queue, beat (periodic schedules) and the scaling loop of every pool,
// whose decisions come from package policy and are fenced by the leader's
// term before they are applied to a target.
//
// It serves nothing itself: the HTTP surface (internal/httpserver) reads
// pools, timelines and leadership through the exported methods of Replica,
// and everything else through the public ebb.Client.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/target"
	"github.com/ebbq/ebb/internal/target/ecs"
	"github.com/ebbq/ebb/internal/target/local"
	"github.com/ebbq/ebb/internal/tid"
)

// LeaderName is what the control-plane replicas elect a leader of.
const LeaderName = ebbtype.ControlPlaneLeaderName

// Options configure a Replica.
type Options struct {
	Config *config.Config
	Driver ebbdriver.Driver
	Logger *slog.Logger
	// ID names this replica; defaults to host-pid-random.
	ID string
	// Executable runs workers of pools without a Command; defaults to this
	// process's binary.
	Executable string
	// Targets, if set, makes the target of a pool (tests and embedders).
	Targets func(pool *config.Pool) (target.Target, error)
	// Clock defaults to the wall clock.
	Clock ebbtype.Clock
}

// Replica is one control-plane replica.
type Replica struct {
	cfg    *config.Config
	drv    ebbdriver.Driver
	logger *slog.Logger
	clock  ebbtype.Clock
	id     string

	pools   []*pool
	byQueue map[string]*pool

	leading atomic.Bool
	term    atomic.Int64
	leader  atomic.Pointer[ebbtype.Leadership]

	beatKick  chan struct{}
	beatDirty atomic.Bool

	stats    *statsCache
	workers  *workerCache
	counters counters
	ready    atomic.Bool

	enqueueHooks enqueueHooks // see OnEnqueue
}

// New checks the configuration and builds the pools' targets.
func New(opts Options) (*Replica, error) {
	if opts.Config == nil || opts.Driver == nil {
		return nil, errors.New("controlplane: Config and Driver are required")
	}
	var err error
	s := &Replica{cfg: opts.Config, drv: opts.Driver, logger: opts.Logger, id: opts.ID, clock: clock.Or(opts.Clock),
		byQueue: map[string]*pool{}, beatKick: make(chan struct{}, 1)}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.id == "" {
		host, _ := os.Hostname()
		s.id = fmt.Sprintf("server-%s-%d-%s", sanitize(host), os.Getpid(), strings.ToLower(tid.NewAt(s.clock.Now())[20:]))
	}
	s.logger = s.logger.With("server", s.id)
	exe := opts.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("controlplane: cannot find this binary to run workers: %w", err)
		}
	}
	for i := range s.cfg.Pools {
		pc := &s.cfg.Pools[i]
		var t target.Target
		switch {
		case opts.Targets != nil:
			t, err = opts.Targets(pc)
		case pc.Target == config.TargetECS:
			t, err = s.ecsTarget(pc)
		case pc.Target == config.TargetKubernetes:
			t, err = s.kubernetesTarget(pc)
		default:
			t, err = s.localTarget(pc, exe)
		}
		if err != nil {
			return nil, fmt.Errorf("controlplane: pool %q: %w", pc.Name, err)
		}
		p := newPool(s, pc, t)
		s.pools = append(s.pools, p)
		if pc.Celery != nil {
			// A Celery pool's queues are Kombu lists on the app's broker: its
			// wake-ups come from their keyspace notifications, not ebb's.
			if p.fleet, err = newCeleryFleet(s, p, pc); err != nil {
				return nil, fmt.Errorf("controlplane: pool %q: %w", pc.Name, err)
			}
			continue
		}
		for _, q := range p.queues {
			s.byQueue[q] = p
		}
	}
	s.stats = newStatsCache(s.drv, s.clock)
	s.workers = &workerCache{drv: s.drv, clock: s.clock}
	s.counters.init()
	return s, nil
}

// ecsTarget scales the pool's ECS service; credentials come from the SDK's
// default chain (the task role when the server runs on ECS).
func (s *Replica) ecsTarget(pc *config.Pool) (target.Target, error) {
	return ecs.New(context.Background(), ecs.Config{
		Cluster: pc.ECS.Cluster, Service: pc.ECS.Service, Region: pc.ECS.Region, Endpoint: pc.ECS.Endpoint,
		// A Celery worker cannot hold its task's protection itself.
		GuardTasks: pc.Celery != nil,
		Logger:     s.logger.With("pool", pc.Name),
	})
}

func (s *Replica) localTarget(pc *config.Pool, exe string) (target.Target, error) {
	if pc.Target != config.TargetLocal {
		return nil, fmt.Errorf("target %q is not available yet; use %q", pc.Target, config.TargetLocal)
	}
	cmd := pc.Command
	if len(cmd) == 0 {
		cmd = []string{exe, "worker",
			"--broker", s.cfg.Broker,
			"--queues", strings.Join(pc.Queues, ","),
			"--concurrency", strconv.Itoa(pc.Concurrency),
			"--pool", pc.Name,
			"--drain-timeout", pc.DrainTimeout.String(),
			// The server's environment may be an ECS task's or a pod's; its
			// child processes must not take that platform for their own.
			"--platform", "none",
		}
	}
	env := make([]string, 0, len(pc.Env))
	for k, v := range pc.Env {
		env = append(env, k+"="+v)
	}
	return local.New(local.Config{
		Pool:      localPoolName(pc.Name),
		Command:   cmd,
		Env:       env,
		LogDir:    pc.LogDir,
		StopGrace: pc.StopGrace,
		Logger:    s.logger.With("pool", pc.Name),
		// A Celery worker's pool processes die on SIGTERM; their parent's
		// warm shutdown lets them finish.
		TermLeaderOnly: pc.Celery != nil,
	})
}

// localPoolName maps a pool name onto the local target's stricter alphabet
// (instance ids double as worker ids and file names).
func localPoolName(name string) string {
	out := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, name)
	out = strings.Trim(out, "-")
	if len(out) > local.PoolMaxLen {
		out = strings.Trim(out[:local.PoolMaxLen], "-")
	}
	if out == "" {
		out = "pool"
	}
	return out
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return r
		}
		return '-'
	}, s)
	if len(s) > 48 {
		s = s[:48]
	}
	return s
}

// ID is this replica's id.
func (s *Replica) ID() string { return s.id }

// Run campaigns for leadership and, while leading, runs maintenance, beat and
// the pools' scaling loops, until ctx is cancelled. Then it stops the pools'
// workers (drain, then SIGTERM, then SIGKILL after the grace period), resigns
// leadership and returns.
func (s *Replica) Run(ctx context.Context) error {
	events, err := s.drv.Listen(ctx, ebbdriver.ListenParams{})
	if err != nil {
		return fmt.Errorf("controlplane: cannot subscribe to broker notifications: %w", err)
	}
	s.logger.Info("control plane running", "broker", s.drv.Name(), "pools", len(s.pools))
	var bg sync.WaitGroup
	bg.Go(func() { s.dispatch(ctx, events) })
	for _, f := range s.celeryFleets() {
		bg.Go(func() { _ = f.mon.Run(ctx) })
	}
	s.ready.Store(true)

	s.elect(ctx) // returns when ctx is done, after stepping down

	s.ready.Store(false)
	stopCtx, cancel := context.WithTimeout(context.Background(), s.stopBudget())
	defer cancel()
	s.shutdownPools(stopCtx)
	for _, f := range s.celeryFleets() {
		_ = f.mon.Close()
	}
	if err := s.drv.LeaderResign(stopCtx, LeaderName, s.id); err != nil {
		s.logger.Warn("could not resign leadership; it expires on its own", "error", err)
	}
	bg.Wait()
	s.logger.Info("control plane stopped")
	return nil
}

// StopBudget is how long Run may take to return once its context is
// cancelled: the longest pool's stop grace and a margin. Callers serving
// HTTP beside it keep serving that long.
func (s *Replica) StopBudget() time.Duration { return s.stopBudget() }

// Ready reports whether Run is subscribed to the broker's notifications
// and campaigning.
func (s *Replica) Ready() bool { return s.ready.Load() }

func (s *Replica) stopBudget() time.Duration {
	d := 10 * time.Second
	for _, p := range s.pools {
		d = max(d, p.cfg.StopGrace+10*time.Second)
	}
	return d
}

// dispatch turns enqueue notifications into immediate reconciles of the pool
// that serves the queue: the wake-on-first-enqueue path.
func (s *Replica) dispatch(ctx context.Context, events <-chan ebbdriver.Event) {
	for {
		for ev := range events {
			if ev.Kind != ebbdriver.EventQueued {
				continue
			}
			if p := s.byQueue[ev.Queue]; p != nil {
				p.kick()
				s.enqueued(p.name)
			}
		}
		if ctx.Err() != nil {
			return
		}
		// The subscription dropped: resubscribe, and reconcile everything in
		// case a notification was lost meanwhile.
		var err error
		for {
			events, err = s.drv.Listen(ctx, ebbdriver.ListenParams{})
			if err == nil {
				break
			}
			s.logger.Warn("broker subscription lost; resubscribing", "error", err)
			if !clock.Sleep(ctx, time.Second) {
				return
			}
		}
		for _, p := range s.pools {
			p.kick()
		}
	}
}

func (s *Replica) shutdownPools(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range s.pools {
		wg.Go(func() { p.shutdown(ctx) })
	}
	wg.Wait()
}

// Leading reports whether this replica leads now.
func (s *Replica) Leading() bool { return s.leading.Load() }

// Leader returns the last leadership this replica saw (its own or
// another's); nil before the first election round.
func (s *Replica) Leader() *ebbtype.Leadership { return s.leader.Load() }

func (s *Replica) pool(name string) *pool {
	for _, p := range s.pools {
		if p.name == name {
			return p
		}
	}
	return nil
}

// Pools returns every pool's last reconciled view, in config order.
func (s *Replica) Pools() []PoolView {
	out := make([]PoolView, 0, len(s.pools))
	for _, p := range s.pools {
		out = append(out, p.snapshot())
	}
	return out
}

// Pool returns a pool's last reconciled view.
func (s *Replica) Pool(name string) (PoolView, bool) {
	if p := s.pool(name); p != nil {
		return p.snapshot(), true
	}
	return PoolView{}, false
}

// Timeline returns a pool's samples since from, oldest first: what the
// scaling loop saw at each pass, kept in memory for an hour.
func (s *Replica) Timeline(pool string, from time.Time) ([]Point, bool) {
	p := s.pool(pool)
	if p == nil {
		return nil, false
	}
	return p.timeline.since(from), true
}

// QueueStats returns queue counts no older than maxAge (0: read now), from
// the cache the scaling loops and maintenance share, so a dashboard or a
// metrics scrape adds no broker reads while the control plane reads anyway.
func (s *Replica) QueueStats(ctx context.Context, maxAge time.Duration) ([]ebbtype.QueueStats, error) {
	return s.stats.get(ctx, maxAge)
}

// Rates returns a queue's tasks per second in (enqueued) and out (succeeded
// or dead), averaged over the last 30 s of cached reads.
func (s *Replica) Rates(queue string) (in, out float64) { return s.stats.rates(queue) }

// SchedulesChanged makes the leader's beat reread the schedules now
// instead of at its next refresh (call it after changing one).
func (s *Replica) SchedulesChanged() {
	s.beatDirty.Store(true)
	select {
	case s.beatKick <- struct{}{}:
	default:
	}
}
