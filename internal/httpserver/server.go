// Package httpserver is ebb server's HTTP surface: the JSON API under
// /api/v1, the dashboard (server-rendered pages, live updates over SSE, the
// pool chart), sign-in and token checks, Prometheus metrics and health
// checks.
//
// It owns no queue logic. It reads and acts through the public *ebb.Client
// (tasks, dead letters, workers, schedules, the decision log) and through
// the exported methods of the control-plane replica it serves beside
// (pools, timelines, leadership, cached queue counts).
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/controlplane"
)

// Options configure a Server.
type Options struct {
	// Config is the server section: listen address, token, read-only.
	Config config.Server
	Client *ebb.Client
	// Control is the control-plane replica this process runs.
	Control *controlplane.Replica
	Logger  *slog.Logger
	// Listener, if set, is used instead of listening on Config.Listen
	// (tests pass one on port 0).
	Listener net.Listener
}

// Server serves the API, the dashboard and metrics of one replica.
type Server struct {
	cfg    config.Server
	client *ebb.Client
	cp     *controlplane.Replica
	logger *slog.Logger

	patterns []string // every route, filled in by routes()
	metrics  *metrics
	listener net.Listener
	http     *http.Server
}

// New builds a Server; it listens only when Listen or Run is called.
func New(opts Options) (*Server, error) {
	if opts.Client == nil || opts.Control == nil {
		return nil, errors.New("httpserver: Client and Control are required")
	}
	// A broken template stops the server at start, not at the first page.
	pageTemplates()
	s := &Server{cfg: opts.Config, client: opts.Client, cp: opts.Control, logger: opts.Logger, listener: opts.Listener}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	s.metrics = newMetrics(s)
	return s, nil
}

// Addr is where the server listens, once it does.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Listen binds the address. Run calls it if the caller did not, so that
// callers can learn the address (port 0) before Run.
func (s *Server) Listen() error {
	if s.listener != nil {
		return nil
	}
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (is another ebb server running? set server.listen or EBB_LISTEN)", s.cfg.Listen, err)
	}
	s.listener = l
	return nil
}

// Handler is the server's routes, for tests and embedders.
func (s *Server) Handler() http.Handler { return s.routes() }

// Run serves until ctx is cancelled, then ends live streams and shuts down
// within 10 s.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	// Requests live in a context cancelled when the server stops, so live
	// dashboard streams end instead of holding Shutdown until its deadline.
	reqCtx, stopRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRequests()
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return reqCtx }}
	done := make(chan error, 1)
	go func() { done <- s.http.Serve(s.listener) }()
	s.logger.Info("ebb server listening", "api", "http://"+s.Addr())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	stopRequests()
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.http.Shutdown(shutCtx)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
