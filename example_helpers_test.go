package ebb_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
)

// exampleBroker opens a throwaway SQLite broker for an example (Example_worker
// shows the same steps written out); the returned func closes and removes it.
func exampleBroker() (ebbdriver.Driver, func()) {
	dir, err := os.MkdirTemp("", "ebb-example")
	if err != nil {
		log.Fatal(err)
	}
	drv, err := ebbsqlite.Open(context.Background(), filepath.Join(dir, "ebb.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	return drv, func() { drv.Close(); os.RemoveAll(dir) }
}

// startWorker runs a worker on drv until the returned func, which drains it
// and waits for it to return. A nil Logger is quiet, so example output stays
// exact.
func startWorker(drv ebbdriver.Driver, cfg ebb.WorkerConfig) (stop func()) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w, err := ebb.NewWorker(drv, &cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			log.Fatal(err)
		}
	}
}
