// Package server is `ebb server`, the always-on control plane: it elects one
// leader among its replicas through the broker; the leader runs maintenance
// for every queue and the autoscaler for every pool; every replica serves
// the JSON API, Prometheus metrics and health checks.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/target"
	"github.com/ebbq/ebb/internal/target/local"
	"github.com/ebbq/ebb/internal/tid"
)

// LeaderName is what the control-plane replicas elect a leader of.
const LeaderName = "control-plane"

// Options configure a Server.
type Options struct {
	Config *config.Config
	Driver ebbdriver.Driver
	Logger *slog.Logger
	// ID names this replica; defaults to host-pid-random.
	ID string
	// Executable runs workers of pools without a Command; defaults to this
	// process's binary.
	Executable string
	// Listener, if set, is used instead of listening on Config.Server.Listen
	// (tests pass one on port 0).
	Listener net.Listener
	// Targets, if set, makes the target of a pool (tests and embedders).
	Targets func(pool *config.Pool) (target.Target, error)
}

// Server is one control-plane replica.
type Server struct {
	cfg    *config.Config
	drv    ebbdriver.Driver
	ctl    ebbdriver.Control
	logger *slog.Logger
	id     string

	pools   []*pool
	byQueue map[string]*pool

	leading atomic.Bool
	term    atomic.Int64
	leader  atomic.Pointer[ebbdriver.Leadership]

	beatKick  chan struct{}
	beatDirty atomic.Bool

	client   *ebb.Client
	patterns []string // every route, filled in by routes()
	stats    *statsCache
	metrics  *metrics
	listener net.Listener
	http     *http.Server
	ready    atomic.Bool
}

// New checks the configuration against the broker and builds the targets.
func New(opts Options) (*Server, error) {
	if opts.Config == nil || opts.Driver == nil {
		return nil, errors.New("server: Config and Driver are required")
	}
	ctl, ok := opts.Driver.(ebbdriver.Control)
	if !ok {
		return nil, fmt.Errorf("server: the %s driver does not support the control plane (leader election, decision log)", opts.Driver.Name())
	}
	var err error
	s := &Server{cfg: opts.Config, drv: opts.Driver, ctl: ctl, logger: opts.Logger, id: opts.ID,
		byQueue: map[string]*pool{}, beatKick: make(chan struct{}, 1)}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.id == "" {
		host, _ := os.Hostname()
		s.id = fmt.Sprintf("server-%s-%d-%s", sanitize(host), os.Getpid(), strings.ToLower(tid.New()[20:]))
	}
	s.logger = s.logger.With("server", s.id)
	exe := opts.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("server: cannot find this binary to run workers: %w", err)
		}
	}
	for i := range s.cfg.Pools {
		pc := &s.cfg.Pools[i]
		var t target.Target
		if opts.Targets != nil {
			t, err = opts.Targets(pc)
		} else {
			t, err = s.localTarget(pc, exe)
		}
		if err != nil {
			return nil, fmt.Errorf("server: pool %q: %w", pc.Name, err)
		}
		p := newPool(s, pc, t)
		s.pools = append(s.pools, p)
		for _, q := range p.queues {
			s.byQueue[q] = p
		}
	}
	s.stats = newStatsCache(s.drv)
	if s.client, err = ebb.NewClient(s.drv, nil); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.metrics = newMetrics(s)
	if opts.Listener != nil {
		s.listener = opts.Listener
	}
	return s, nil
}

func (s *Server) localTarget(pc *config.Pool, exe string) (target.Target, error) {
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
func (s *Server) ID() string { return s.id }

// Addr is where the API listens, once Run has started listening.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Listen binds the API address. Run calls it if the caller did not, so that
// callers can learn the address (port 0) before Run.
func (s *Server) Listen() error {
	if s.listener != nil {
		return nil
	}
	l, err := net.Listen("tcp", s.cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("server: cannot listen on %s: %w (is another ebb server running? set server.listen or EBB_LISTEN)", s.cfg.Server.Listen, err)
	}
	s.listener = l
	return nil
}

// Run serves until ctx is cancelled, then stops the pools' workers (drain,
// then SIGTERM, then SIGKILL after the grace period), resigns leadership and
// returns.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	// Requests live in a context cancelled when the server stops, so live
	// dashboard streams end instead of holding Shutdown until its deadline.
	reqCtx, stopRequests := context.WithCancel(context.Background())
	defer stopRequests()
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return reqCtx }}
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Serve(s.listener) }()
	s.logger.Info("ebb server listening", "api", "http://"+s.Addr(), "broker", s.drv.Name(), "pools", len(s.pools))

	events, err := s.drv.Listen(ctx, ebbdriver.ListenParams{})
	if err != nil {
		_ = s.http.Close()
		return fmt.Errorf("server: cannot subscribe to broker notifications: %w", err)
	}
	var bg sync.WaitGroup
	bg.Go(func() { s.dispatch(ctx, events) })
	s.ready.Store(true)

	s.elect(ctx) // returns when ctx is done, after stepping down

	s.ready.Store(false)
	stopCtx, cancel := context.WithTimeout(context.Background(), s.stopBudget())
	defer cancel()
	s.shutdownPools(stopCtx)
	if err := s.ctl.LeaderResign(stopCtx, LeaderName, s.id); err != nil {
		s.logger.Warn("could not resign leadership; it expires on its own", "error", err)
	}
	stopRequests()
	_ = s.http.Shutdown(stopCtx)
	bg.Wait()
	if err := <-httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	s.logger.Info("ebb server stopped")
	return nil
}

func (s *Server) stopBudget() time.Duration {
	d := 10 * time.Second
	for _, p := range s.pools {
		d = max(d, p.cfg.StopGrace+10*time.Second)
	}
	return d
}

// dispatch turns enqueue notifications into immediate reconciles of the pool
// that serves the queue: the wake-on-first-enqueue path.
func (s *Server) dispatch(ctx context.Context, events <-chan ebbdriver.Event) {
	for {
		for ev := range events {
			if ev.Kind != ebbdriver.EventQueued {
				continue
			}
			if p := s.byQueue[ev.Queue]; p != nil {
				p.kick()
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
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		for _, p := range s.pools {
			p.kick()
		}
	}
}

func (s *Server) shutdownPools(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range s.pools {
		wg.Go(func() { p.shutdown(ctx) })
	}
	wg.Wait()
}

// Leading reports whether this replica leads now.
func (s *Server) Leading() bool { return s.leading.Load() }

func (s *Server) pool(name string) *pool {
	for _, p := range s.pools {
		if p.name == name {
			return p
		}
	}
	return nil
}

// Pool returns a pool's last reconciled view.
func (s *Server) Pool(name string) (PoolView, bool) {
	for _, p := range s.pools {
		if p.name == name {
			return p.snapshot(), true
		}
	}
	return PoolView{}, false
}
