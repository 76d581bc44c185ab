// Command enqueue-cost makes single-task enqueues, one at a time, through
// ebb's Client on Redis or through asynq's, the peer with the fastest
// single-call enqueue. scripts/bench-redis-instructions runs it against a
// redis-server under callgrind to count the instructions Redis spends on
// one call, which, unlike a rate, does not move with a shared machine's
// speed.
//
//	go run ./cmd/enqueue-cost -system ebb -addr 127.0.0.1:6379 -n 3000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
)

type noop struct {
	T int64 `json:"t,omitempty"`
}

func (noop) Kind() string { return "ebb.bench.noop" }

func main() {
	system := flag.String("system", "ebb", "ebb or asynq")
	addr := flag.String("addr", "127.0.0.1:6379", "Redis host:port (its database 0 is written to)")
	n := flag.Int("n", 3000, "enqueues")
	flag.Parse()
	if err := run(context.Background(), *system, *addr, *n); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue-cost:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, system, addr string, n int) error {
	var enqueue func() error
	switch system {
	case "ebb":
		d, err := ebbredis.Open(ctx, "redis://"+addr+"/0", nil)
		if err != nil {
			return err
		}
		defer d.Close()
		c, err := ebb.NewClient(d, &ebb.ClientConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return err
		}
		enqueue = func() error {
			_, err := c.Enqueue(ctx, noop{T: time.Now().UnixNano()}, &ebb.EnqueueOpts{Queue: "bench"})
			return err
		}
	case "asynq":
		c := asynq.NewClient(asynq.RedisClientOpt{Addr: addr})
		defer c.Close()
		enqueue = func() error {
			p, err := json.Marshal(noop{T: time.Now().UnixNano()})
			if err != nil {
				return err
			}
			_, err = c.EnqueueContext(ctx, asynq.NewTask("noop", p), asynq.Queue("bench"))
			return err
		}
	default:
		return fmt.Errorf("-system %q: want ebb or asynq", system)
	}
	start := time.Now()
	for i := range n {
		if err := enqueue(); err != nil {
			return fmt.Errorf("enqueue %d: %w", i, err)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"system": system, "n": n, "seconds": time.Since(start).Seconds()})
}
