package kedascaler

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ebbq/ebb/internal/controlplane"
	pb "github.com/ebbq/ebb/internal/kedascaler/externalscaler"
)

// source is a control plane reduced to what the scaler reads; the scaler
// itself runs for real, over gRPC on loopback, as KEDA reaches it. (The
// e2e/k8s tests run it under the real KEDA operator.)
type source struct {
	mu    sync.Mutex
	loads map[string]controlplane.PoolLoad
	hooks []func(string)
}

func (s *source) PoolLoad(_ context.Context, pool string, _ time.Duration) (controlplane.PoolLoad, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.loads[pool]
	return l, ok, nil
}

func (s *source) OnEnqueue(fn func(string)) func() {
	s.mu.Lock()
	s.hooks = append(s.hooks, fn)
	s.mu.Unlock()
	return func() {}
}

func (s *source) set(pool string, l controlplane.PoolLoad) {
	s.mu.Lock()
	s.loads[pool] = l
	s.mu.Unlock()
}

func (s *source) enqueue(pool string) {
	s.mu.Lock()
	hooks := append([]func(string){}, s.hooks...)
	s.mu.Unlock()
	for _, h := range hooks {
		h(pool)
	}
}

func TestScaler(t *testing.T) {
	defer goleak.VerifyNone(t)
	src := &source{loads: map[string]controlplane.PoolLoad{"jobs": {Concurrency: 4}}}
	ctx, cancel := context.WithCancel(context.Background())
	addr, done, err := New(src, nil).Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewExternalScalerClient(conn)
	ref := &pb.ScaledObjectRef{Name: "w", Namespace: "ns", ScalerMetadata: map[string]string{"pool": "jobs"}}

	if _, err := c.IsActive(ctx, &pb.ScaledObjectRef{Name: "w"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("IsActive without a pool = %v, want InvalidArgument", err)
	}
	if _, err := c.IsActive(ctx, &pb.ScaledObjectRef{ScalerMetadata: map[string]string{"pool": "nope"}}); status.Code(err) != codes.NotFound {
		t.Fatalf("IsActive of an unknown pool = %v, want NotFound", err)
	}
	if r, err := c.IsActive(ctx, ref); err != nil || r.Result {
		t.Fatalf("IsActive of an empty pool = %v, %v; want false", r, err)
	}
	spec, err := c.GetMetricSpec(ctx, ref)
	if err != nil || len(spec.MetricSpecs) != 1 || spec.MetricSpecs[0].TargetSizeFloat != 4 || spec.MetricSpecs[0].MetricName != "ebb-jobs" {
		t.Fatalf("GetMetricSpec = %v, %v; want ebb-jobs with the pool's concurrency 4 as target", spec, err)
	}
	// In-flight tasks count: a list-length scaler would see 0 here.
	src.set("jobs", controlplane.PoolLoad{Queued: 2, InFlight: 5, Concurrency: 4})
	m, err := c.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "ebb-jobs"})
	if err != nil || m.MetricValues[0].MetricValueFloat != 7 || m.MetricValues[0].MetricValue != 7 {
		t.Fatalf("GetMetrics = %v, %v; want queued + in flight = 7", m, err)
	}
	src.set("jobs", controlplane.PoolLoad{InFlight: 1, Concurrency: 4})
	if r, err := c.IsActive(ctx, ref); err != nil || !r.Result {
		t.Fatalf("IsActive with one task in flight = %v, %v; want true", r, err)
	}

	// The stream: the current state at once, true on an enqueue before
	// the counts show it, false once the pool is empty.
	src.set("jobs", controlplane.PoolLoad{Concurrency: 4})
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := c.StreamIsActive(sctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	recv := func() bool {
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r.Result
	}
	if recv() {
		t.Fatal("the stream's first value for an empty pool is true")
	}
	waitHooks(t, src)
	src.enqueue("other")
	src.enqueue("jobs")
	// The counts are still empty: only the enqueue hook can say true.
	if !recv() {
		t.Fatal("an enqueue pushed false")
	}
	// The counts (still empty) bring it back to false at the next check.
	if recv() {
		t.Fatal("an empty pool stayed active")
	}
	stop()
}

func waitHooks(t *testing.T, src *source) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		src.mu.Lock()
		n := len(src.hooks)
		src.mu.Unlock()
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the stream registered no enqueue hook")
}
