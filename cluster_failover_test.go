package ebb_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

// go-redis logs every refused dial to a killed node on stderr; the tests
// check outcomes, not that log. Set before any test starts: go-redis reads
// its logger without a lock.
func init() { redis.SetLogger(discardRedisLog{}) }

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// TestClusterFailover runs tasks on a real Redis Cluster through ebb.Client
// and two ebb.Workers while masters are SIGKILLed one after another (each
// time its replica takes over, then the killed node comes back as a
// replica). Clients and workers must carry on by themselves, and with
// WaitReplicas no acknowledged task may be lost. Without it replication is
// asynchronous: the test counts what a failover loses but cannot demand
// zero, and checks the rest (everything else ran, work resumed after each
// failover).
//
// EBB_CLUSTER_FAILOVERS sets the failovers per setting (default 1);
// EBB_CLUSTER_FAILOVER_REPORT names a file to append one JSON line per
// setting to (scripts/bench-cluster-failover reads it).
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	rounds := 1
	if s := os.Getenv("EBB_CLUSTER_FAILOVERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("EBB_CLUSTER_FAILOVERS=%q: want a positive number", s)
		}
		rounds = n
	}
	// One cluster per setting, one after the other: a 2-core machine
	// fails masters over by itself when two such runs load it at once.
	for _, tc := range []struct {
		name string
		wait int
	}{{"wait", 1}, {"default", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			r := runFailovers(t, rounds, tc.wait)
			t.Logf("%s: %d failovers (%v), %d acknowledged, %d lost, %d refused, steady %.0f enqueues/s",
				tc.name, rounds, r.Failovers, r.Acked, r.Lost, r.Refused, r.SteadyRate)
			if tc.wait > 0 && r.Lost > 0 {
				t.Errorf("with WaitReplicas %d, %d of %d acknowledged tasks were lost in %d failovers", tc.wait, r.Lost, r.Acked, rounds)
			}
			if path := os.Getenv("EBB_CLUSTER_FAILOVER_REPORT"); path != "" {
				r.Setting = tc.name
				line, _ := json.Marshal(r)
				f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = f.Write(append(line, '\n'))
				_ = f.Close()
			}
		})
	}
}

type failoverReport struct {
	Setting    string   `json:"setting"`
	Rounds     int      `json:"rounds"`
	Failovers  []string `json:"failovers"` // time from kill to cluster_state:ok, each
	Acked      int      `json:"acked"`
	Lost       int      `json:"lost"`
	Refused    int      `json:"refused"` // enqueues that returned an error
	SteadyRate float64  `json:"steady_rate"`
}

func runFailovers(t *testing.T, rounds, waitReplicas int) failoverReport {
	c := testredis.StartCluster(t, testredis.ClusterConfig{NodeTimeout: time.Second})
	prefix := c.Prefix(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	newDriver := func() *ebbredis.Driver {
		d, err := ebbredis.New(c.Client(t), &ebbredis.Config{Prefix: prefix, WaitReplicas: waitReplicas})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	queues := []ebb.QueueConfig{{Name: "q0"}, {Name: "q1"}, {Name: "q2"}, {Name: "q3"}, {Name: "q4"}, {Name: "q5"}}

	var ran sync.Map
	var ranN atomic.Int64
	h := ebb.NewHandlers()
	ebb.HandleRaw(h, "chaos", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		if _, dup := ran.LoadOrStore(task.ID, true); !dup {
			ranN.Add(1)
		}
		return nil, nil
	})
	var workers sync.WaitGroup
	for i := range 2 {
		w, err := ebb.NewWorker(newDriver(), &ebb.WorkerConfig{
			Handlers: h, Queues: queues, ID: "chaos-" + strconv.Itoa(i), Concurrency: 20,
			// Short leases: a completion lost with its master is rescued
			// within seconds.
			LeaseDuration: 3 * time.Second, HeartbeatInterval: time.Second, PollInterval: 200 * time.Millisecond,
			RetryPolicy: ebb.RetryPolicyFunc(func(*ebb.TaskInfo, error) time.Duration { return 0 }),
			Logger:      quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		workers.Go(func() { _ = w.Run(ctx) })
	}

	client, err := ebb.NewClient(newDriver(), &ebb.ClientConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		acked   []string
		refused atomic.Int64
	)
	stop := make(chan struct{})
	var producers sync.WaitGroup
	// Bounded: each producer stops after maxPerProducer attempts even if
	// the test's timing goes wrong.
	const maxPerProducer = 200_000
	for p := range 4 {
		producers.Go(func() {
			for i := 0; i < maxPerProducer; i++ {
				select {
				case <-stop:
					return
				default:
				}
				q := queues[(p+i)%len(queues)].Name
				res, err := client.EnqueueRaw(ctx, "chaos", json.RawMessage(`{}`), &ebb.EnqueueOpts{Queue: q, MaxAttempts: 50})
				if err != nil {
					refused.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked = append(acked, res.ID)
				mu.Unlock()
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}

	report := failoverReport{Rounds: rounds}
	time.Sleep(time.Second) // warm up
	before, start := count(), time.Now()
	time.Sleep(2 * time.Second)
	report.SteadyRate = float64(count()-before) / time.Since(start).Seconds()

	for round := range rounds {
		ms := c.Masters()
		m := ms[round%len(ms)]
		report.Failovers = append(report.Failovers, c.Failover(m).Round(time.Millisecond).String())
		// Work must resume by itself: tasks acknowledged after the
		// failover run.
		after := count()
		if err := testwait.Until(30*time.Second, func() (bool, error) { return count() > after+50, nil }); err != nil {
			t.Fatalf("failover %d: clients did not resume enqueueing: %v", round+1, err)
		}
	}
	close(stop)
	producers.Wait()

	mu.Lock()
	all := append([]string(nil), acked...)
	mu.Unlock()
	missing := func() int {
		n := 0
		for _, id := range all {
			if _, ok := ran.Load(id); !ok {
				n++
			}
		}
		return n
	}
	// Wait until everything still stored ran: the tasks left are those the
	// failovers lost. A lost claim or completion is rescued within the
	// 3 s lease; the count must stop falling for 5 s to call the rest lost.
	last, still := -1, time.Now()
	_ = testwait.Until(90*time.Second, func() (bool, error) {
		n := missing()
		if n != last {
			last, still = n, time.Now()
		}
		return n == 0 || time.Since(still) > 5*time.Second, nil
	})
	cancel()
	workers.Wait()
	report.Acked = len(all)
	report.Lost = missing()
	report.Refused = int(refused.Load())
	if report.Acked-report.Lost < rounds*50 {
		t.Fatalf("only %d of %d acknowledged tasks ran", report.Acked-report.Lost, report.Acked)
	}
	return report
}
