package cli

import (
	"strconv"
	"strings"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/builtin"
)

func runWorker(e *env, args []string) error {
	f := newFlagSet(e, "worker", "worker [--queues a,b] [--concurrency N] [flags]",
		"ebb worker --broker redis://127.0.0.1:6379/0 --queues critical,default --concurrency 50")
	queues := f.String("queues", ebb.QueueDefault, "queues to serve, in strict order (a,b) or weighted (a:3,b:1)")
	concurrency := f.Int("concurrency", ebb.ConcurrencyDefault, "tasks run at once")
	drain := f.Duration("drain-timeout", ebb.DrainTimeoutDefault, "on SIGTERM/SIGINT, how long running tasks may finish before they are handed back")
	lease := f.Duration("lease", ebb.LeaseDurationDefault, "how long the worker owns a task between heartbeats before others may rescue it")
	heartbeat := f.Duration("heartbeat", ebb.HeartbeatIntervalDefault, "lease renewal and registry heartbeat interval (less than --lease)")
	id := f.String("id", "", "worker id in the registry (default host-pid-random)")
	pool := f.String("pool", "", "pool name, when run by the autoscaler")
	if pos, err := f.parse(e, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q (see --help)", pos[0])
	}
	var qs []ebb.QueueConfig
	for _, item := range splitList(*queues) {
		name, weight, hasWeight := strings.Cut(item, ":")
		q := ebb.QueueConfig{Name: name}
		if hasWeight {
			n, err := strconv.Atoi(weight)
			if err != nil || n < 1 {
				return usagef("--queues %q: weight of %q must be a positive integer", *queues, name)
			}
			q.Weight = n
		}
		qs = append(qs, q)
	}
	if len(qs) == 0 {
		return usagef("--queues is empty: name at least one queue")
	}
	if *concurrency < 1 {
		return usagef("--concurrency %d: must be at least 1", *concurrency)
	}

	ctx, drv, closeBroker, err := f.openBroker()
	if err != nil {
		return err
	}
	defer closeBroker()
	handlers := ebb.NewHandlers()
	builtin.Register(handlers)
	w, err := ebb.NewWorker(drv, &ebb.WorkerConfig{
		Handlers:          handlers,
		Queues:            qs,
		Concurrency:       *concurrency,
		DrainTimeout:      *drain,
		LeaseDuration:     *lease,
		HeartbeatInterval: *heartbeat,
		ID:                *id,
		Pool:              *pool,
		Logger:            e.logger,
	})
	if err != nil {
		return usagef("%v", err)
	}
	return w.Run(ctx)
}
