package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/ebbq/ebb"
)

// The worker's health listener (--health-addr), for Kubernetes probes and
// the preStop hook:
//
//	GET  /livez   200 while the heartbeat loop keeps running (a wedged
//	              worker fails it and is restarted); a broker outage does
//	              not fail it, so it cannot restart a whole pool at once.
//	GET  /readyz  200 while the broker accepts the heartbeats, i.e. the
//	              worker is in the registry and can be given work.
//	POST /drain   from loopback only: drain as the autoscaler would (stop
//	              fetching, finish what is held, no deadline) and answer
//	              once the worker holds nothing. `ebb worker-prestop` calls
//	              it from the pod's preStop hook.
//
// Each answers with the worker's ebb.WorkerHealth as JSON.
func healthHandler(w *ebb.Worker) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(rw http.ResponseWriter, _ *http.Request) {
		h := w.Health()
		ok := h.Running && time.Since(h.LastBeatAttempt) < 3*h.HeartbeatInterval+10*time.Second
		writeHealth(rw, ok, h)
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		h := w.Health()
		writeHealth(rw, h.Running && time.Since(h.LastHeartbeat) < 3*h.HeartbeatInterval, h)
	})
	mux.HandleFunc("POST /drain", func(rw http.ResponseWriter, r *http.Request) {
		if !fromLoopback(r) {
			http.Error(rw, "drain is accepted from inside the pod (loopback) only", http.StatusForbidden)
			return
		}
		w.Drain()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			h := w.Health()
			if h.Drained || !h.Running {
				writeHealth(rw, true, h)
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
	})
	return mux
}

func writeHealth(rw http.ResponseWriter, ok bool, h ebb.WorkerHealth) {
	rw.Header().Set("Content-Type", "application/json")
	if !ok {
		rw.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(rw).Encode(h)
}

func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// serveHealth listens on addr and serves the health endpoints until ctx
// ends. It returns once listening, so a bad address fails the start.
func serveHealth(ctx context.Context, e *env, addr string, w *ebb.Worker) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return usagef("--health-addr %q: %v", addr, err)
	}
	srv := &http.Server{Handler: healthHandler(w), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.logger.Warn("health listener stopped", "error", err)
		}
	}()
	e.logger.Info("health endpoints listening", "addr", l.Addr().String())
	return nil
}

// runWorkerPrestop is a pod's preStop hook: it asks the worker in the same
// pod to drain and waits until it holds nothing, so that the SIGTERM which
// follows (and any sidecar's shutdown) finds nothing running.
func runWorkerPrestop(e *env, args []string) error {
	f := newFlagSet(e, "worker-prestop", "worker-prestop [--health-addr 127.0.0.1:8081] [--timeout 1h]",
		"lifecycle: {preStop: {exec: {command: [ebb, worker-prestop, --health-addr, 127.0.0.1:8081]}}}")
	addr := f.String("health-addr", "127.0.0.1:8081", "the worker's --health-addr, reached on loopback")
	timeout := f.Duration("timeout", time.Hour, "give up after this long (the pod's terminationGracePeriodSeconds bounds it anyway)")
	if pos, err := f.parse(e, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q (see --help)", pos[0])
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return usagef("--health-addr %q: %v", *addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+net.JoinHostPort(host, port)+"/drain", nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("worker-prestop: asking the worker at %s to drain: %w", *addr, err)
	}
	defer resp.Body.Close()
	var h ebb.WorkerHealth
	_ = json.NewDecoder(resp.Body).Decode(&h)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("worker-prestop: the worker answered %s", resp.Status)
	}
	e.logger.Info("worker drained", "waited", time.Since(start).Round(time.Millisecond), "busy", h.Busy)
	return nil
}
