package httpserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/tid"
)

// BenchmarkDashboard measures how long the server takes to answer the
// overview and task searches with many finished tasks stored: by default
// 1,000,000 (EBB_BENCH_DASHBOARD_TASKS), on SQLite and on a private Redis.
// Each request goes through the whole handler stack over HTTP on loopback;
// p50 and p99 are reported besides the mean. Run by scripts/bench:
//
//	go test -run '^$' -bench BenchmarkDashboard -benchtime 200x -timeout 60m ./internal/httpserver/
//
// The tasks pass through the real path (enqueue, fetch, complete), 1,000
// at a time; the benchmark logs how long filling took.
func BenchmarkDashboard(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("EBB_BENCH_DASHBOARD_TASKS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("EBB_BENCH_DASHBOARD_TASKS=%q: %v", v, err)
		}
	}
	for _, kind := range []string{"sqlite", "redis"} {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			var drv ebbdriver.Driver
			var err error
			if kind == "sqlite" {
				drv, err = ebbsqlite.Open(ctx, filepath.Join(b.TempDir(), "ebb.db"), nil)
			} else {
				drv, err = ebbredis.Open(ctx, testredis.Start(b).URL(), nil)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer drv.Close()
			start := time.Now()
			fillFinished(b, drv, n)
			b.Logf("%s: stored %d finished tasks in %s", kind, n, time.Since(start).Round(time.Second))

			cfg := config.Default()
			srv, _, _ := newTestServer(b, cfg, drv)
			hs := httptest.NewServer(srv.routes())
			defer hs.Close()
			for _, req := range []struct{ name, path string }{
				{"overview", "/"},
				{"search-newest", "/tasks"},
				{"search-succeeded-in-queue", "/tasks?queue=q2&state=succeeded"},
				{"search-rare-kind", "/tasks?kind=rare"},
				{"search-dead-of-kind", "/tasks?state=dead&kind=report"},
				{"api-search-kind", "/api/v1/tasks?kind=report&limit=100"},
			} {
				b.Run(req.name, func(b *testing.B) {
					took := make([]time.Duration, 0, b.N)
					for b.Loop() {
						t0 := time.Now()
						res, err := http.Get(hs.URL + req.path)
						if err != nil {
							b.Fatal(err)
						}
						_, _ = io.Copy(io.Discard, res.Body)
						_ = res.Body.Close()
						took = append(took, time.Since(t0))
						if res.StatusCode != http.StatusOK {
							b.Fatalf("GET %s: %d", req.path, res.StatusCode)
						}
					}
					slices.Sort(took)
					b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
				})
			}
		})
	}
}

// fillFinished stores n finished tasks over four queues: mostly "email",
// some "report", one in a thousand "rare"; one in a hundred dies.
func fillFinished(b *testing.B, drv ebbdriver.Driver, n int) {
	ctx := context.Background()
	const batch = 1000
	now := time.Now()
	for done := 0; done < n; {
		m := min(batch, n-done)
		recs := make([]*ebbtype.TaskInfo, m)
		queue := fmt.Sprintf("q%d", (done/batch)%4)
		for i := range recs {
			kind := "email"
			switch j := done + i; {
			case j%1000 == 7:
				kind = "rare"
			case j%10 == 3:
				kind = "report"
			}
			recs[i] = &ebbtype.TaskInfo{ID: tid.New(), Kind: kind, Queue: queue, EncodedArgs: []byte(`{"to":"someone@example.com","n":` + strconv.Itoa(done+i) + `}`),
				Priority: ebbtype.PriorityNormal, RunAt: now, MaxAttempts: 1, Retention: 24 * time.Hour, EnqueuedAt: now}
		}
		if _, err := drv.Enqueue(ctx, recs); err != nil {
			b.Fatal(err)
		}
		res, err := drv.Fetch(ctx, ebbdriver.FetchParams{Queues: []string{queue}, Limit: m, WorkerID: "bench", LeaseToken: tid.New(),
			LeaseDuration: time.Minute, Now: now})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Tasks) != m {
			b.Fatalf("fetched %d of %d", len(res.Tasks), m)
		}
		cs := make([]ebbdriver.Completion, m)
		for i, t := range res.Tasks {
			cs[i] = ebbdriver.Completion{Queue: queue, ID: t.ID, LeaseToken: t.LeaseToken, Outcome: ebbdriver.OutcomeSucceeded, Result: []byte(`{"ok":true}`), Now: now}
			if (done+i)%100 == 42 {
				cs[i].Outcome, cs[i].Result = ebbdriver.OutcomeDead, nil
				cs[i].Error = &ebbtype.AttemptError{Attempt: 1, At: now, Error: "smtp: 550 mailbox unavailable"}
			}
		}
		if _, err := drv.Complete(ctx, cs); err != nil {
			b.Fatal(err)
		}
		done += m
	}
}
