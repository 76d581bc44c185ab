// Package kedascaler is KEDA's external-push scaler, served by `ebb server
// --keda-addr`, for clusters where KEDA owns the replica count of a pool's
// workload.
//
// A ScaledObject's trigger names the pool:
//
//	triggers:
//	- type: external-push
//	  metadata:
//	    scalerAddress: ebb.NAMESPACE.svc:9090
//	    pool: default
//
// The metric is the pool's queued plus in-flight tasks, so KEDA does not
// scale in under busy workers the way a list-length scaler does, and the
// target per replica is the pool's concurrency (metadata
// tasksPerReplica overrides it). Activation is pushed on StreamIsActive
// the moment an enqueue notification for one of the pool's queues reaches
// the server, with no wait for KEDA's polling interval; a 1 s check pushes
// the way back to inactive.
package kedascaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ebbq/ebb/internal/controlplane"
	pb "github.com/ebbq/ebb/internal/kedascaler/externalscaler"
)

// Source is what the scaler reads: controlplane.Replica.
type Source interface {
	PoolLoad(ctx context.Context, pool string, maxAge time.Duration) (controlplane.PoolLoad, bool, error)
	OnEnqueue(fn func(pool string)) (remove func())
}

// Metadata keys of a ScaledObject's trigger.
const (
	MetaPool            = "pool"
	MetaTasksPerReplica = "tasksPerReplica"
	MetaActivation      = "activationTasks"
)

// checkEvery is how often an open StreamIsActive re-reads the counts (from
// the control plane's cache, which its own loops keep fresh), to push
// changes that no notification announces, such as the last task finishing.
const checkEvery = time.Second

// Server implements the external scaler.
type Server struct {
	pb.UnimplementedExternalScalerServer
	src    Source
	logger *slog.Logger
}

// New returns a scaler reading from src.
func New(src Source, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{src: src, logger: logger.With("component", "keda-scaler")}
}

// Serve listens on addr and serves until ctx ends. It returns once the
// listener is open (its error, if any), and serves on a goroutine; done is
// closed when serving has stopped.
func (s *Server) Serve(ctx context.Context, addr string) (bound string, done <-chan struct{}, err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("keda scaler: listening on %s: %w", addr, err)
	}
	g := grpc.NewServer()
	pb.RegisterExternalScalerServer(g, s)
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		if err := g.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.logger.Warn("keda scaler stopped", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		// Streams stay open for as long as KEDA runs; Stop ends them.
		g.Stop()
	}()
	s.logger.Info("KEDA external-push scaler listening", "addr", l.Addr().String())
	return l.Addr().String(), ch, nil
}

type trigger struct {
	pool       string
	perReplica float64 // 0: the pool's concurrency
	activation int64
}

func parse(ref *pb.ScaledObjectRef) (trigger, error) {
	md := ref.GetScalerMetadata()
	tr := trigger{pool: md[MetaPool]}
	if tr.pool == "" {
		return tr, status.Errorf(codes.InvalidArgument, "ScaledObject %s/%s: the trigger's metadata needs %q, the name of an ebb pool", ref.GetNamespace(), ref.GetName(), MetaPool)
	}
	if v := md[MetaTasksPerReplica]; v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return tr, status.Errorf(codes.InvalidArgument, "ScaledObject %s/%s: %s %q must be a positive number", ref.GetNamespace(), ref.GetName(), MetaTasksPerReplica, v)
		}
		tr.perReplica = f
	}
	if v := md[MetaActivation]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return tr, status.Errorf(codes.InvalidArgument, "ScaledObject %s/%s: %s %q must be a whole number ≥ 0", ref.GetNamespace(), ref.GetName(), MetaActivation, v)
		}
		tr.activation = n
	}
	return tr, nil
}

func (s *Server) load(ctx context.Context, tr trigger, maxAge time.Duration) (controlplane.PoolLoad, error) {
	l, ok, err := s.src.PoolLoad(ctx, tr.pool, maxAge)
	if !ok {
		return l, status.Errorf(codes.NotFound, "no pool %q in this server's config", tr.pool)
	}
	if err != nil {
		return l, status.Errorf(codes.Unavailable, "reading pool %q's counts: %v", tr.pool, err)
	}
	return l, nil
}

func active(tr trigger, l controlplane.PoolLoad) bool {
	return l.Queued+l.InFlight > tr.activation
}

// MetricName is the metric a pool's trigger reports.
func MetricName(pool string) string {
	return "ebb-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return '-'
	}, pool)
}

// IsActive reports whether the pool has work.
func (s *Server) IsActive(ctx context.Context, ref *pb.ScaledObjectRef) (*pb.IsActiveResponse, error) {
	tr, err := parse(ref)
	if err != nil {
		return nil, err
	}
	l, err := s.load(ctx, tr, 0)
	if err != nil {
		return nil, err
	}
	return &pb.IsActiveResponse{Result: active(tr, l)}, nil
}

// StreamIsActive pushes the pool's activity: at once when the stream
// opens, true the moment a task is enqueued for it, and every change the
// 1 s check sees.
func (s *Server) StreamIsActive(ref *pb.ScaledObjectRef, stream grpc.ServerStreamingServer[pb.IsActiveResponse]) error {
	tr, err := parse(ref)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	wake := make(chan struct{}, 1)
	remove := s.src.OnEnqueue(func(pool string) {
		if pool == tr.pool {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	defer remove()
	var mu sync.Mutex
	last, sent := false, false
	push := func(v bool) error {
		mu.Lock()
		defer mu.Unlock()
		if sent && v == last {
			return nil
		}
		if err := stream.Send(&pb.IsActiveResponse{Result: v}); err != nil {
			return err
		}
		last, sent = v, true
		return nil
	}
	l, err := s.load(ctx, tr, 0)
	if err != nil {
		return err
	}
	if err := push(active(tr, l)); err != nil {
		return err
	}
	s.logger.Info("KEDA stream opened", "scaledobject", ref.GetNamespace()+"/"+ref.GetName(), "pool", tr.pool)
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			// An enqueue: the pool has work now, whatever the cached
			// counts say. An activation threshold above zero needs the
			// counts, read fresh.
			v := true
			if tr.activation > 0 {
				if l, err := s.load(ctx, tr, 0); err == nil {
					v = active(tr, l)
				}
			}
			if err := push(v); err != nil {
				return err
			}
		case <-t.C:
			l, err := s.load(ctx, tr, checkEvery)
			if err != nil {
				s.logger.Warn("KEDA stream: cannot read counts", "pool", tr.pool, "error", err)
				continue
			}
			if err := push(active(tr, l)); err != nil {
				return err
			}
		}
	}
}

// GetMetricSpec gives the target per replica: the pool's concurrency, or
// the trigger's tasksPerReplica.
func (s *Server) GetMetricSpec(ctx context.Context, ref *pb.ScaledObjectRef) (*pb.GetMetricSpecResponse, error) {
	tr, err := parse(ref)
	if err != nil {
		return nil, err
	}
	per := tr.perReplica
	if per == 0 {
		l, err := s.load(ctx, tr, time.Minute)
		if err != nil {
			return nil, err
		}
		per = float64(max(1, l.Concurrency))
	}
	return &pb.GetMetricSpecResponse{MetricSpecs: []*pb.MetricSpec{{
		MetricName: MetricName(tr.pool), TargetSize: int64(per), TargetSizeFloat: per,
	}}}, nil
}

// GetMetrics reports queued + in flight.
func (s *Server) GetMetrics(ctx context.Context, req *pb.GetMetricsRequest) (*pb.GetMetricsResponse, error) {
	tr, err := parse(req.GetScaledObjectRef())
	if err != nil {
		return nil, err
	}
	l, err := s.load(ctx, tr, 0)
	if err != nil {
		return nil, err
	}
	n := l.Queued + l.InFlight
	return &pb.GetMetricsResponse{MetricValues: []*pb.MetricValue{{
		MetricName: MetricName(tr.pool), MetricValue: n, MetricValueFloat: float64(n),
	}}}, nil
}
