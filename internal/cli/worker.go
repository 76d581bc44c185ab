package cli

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/brokerurl"
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
	wait := newBrokerWait(f)
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
	maxWait, err := wait.value()
	if err != nil {
		return err
	}

	ctx, stop := signalContext()
	defer stop()
	b, err := openBrokerWait(ctx, e, *f.broker, maxWait)
	if b == nil {
		return err
	}
	defer b.Close()
	handlers := ebb.NewHandlers()
	builtin.Register(handlers)
	w, err := ebb.NewWorker(b.Driver(), &ebb.WorkerConfig{
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

// brokerWaitDefault outlasts a broker's usual cold start on Kubernetes or
// ECS (image pull, scheduling, loading a dataset) with room to spare, and
// still ends in a visible failure if the broker is really gone.
const brokerWaitDefault = 5 * time.Minute

const brokerWaitEnv = "EBB_BROKER_WAIT"

// brokerWait is the --broker-wait flag of the long-running commands.
type brokerWait struct {
	f   *flagSet
	d   *time.Duration
	env error // a bad EBB_BROKER_WAIT, reported only if the flag does not override it
}

func newBrokerWait(f *flagSet) *brokerWait {
	def, envErr := brokerWaitFromEnv()
	if envErr != nil {
		def = brokerWaitDefault
	}
	d := f.Duration("broker-wait", def, "how long to keep retrying an unreachable broker at start (backoff 250ms doubling to 10s, "+
		"a warning per attempt); 0 fails at once; SIGINT/SIGTERM while waiting exits 0 (env "+brokerWaitEnv+")")
	return &brokerWait{f: f, d: d, env: envErr}
}

func (w *brokerWait) value() (time.Duration, error) {
	if !flagSetByUser(w.f, "broker-wait") {
		if w.env != nil {
			return 0, w.env
		}
	}
	if *w.d < 0 {
		return 0, usagef("--broker-wait %s: must not be negative (0 fails at once)", *w.d)
	}
	return *w.d, nil
}

// brokerWaitFromEnv reads EBB_BROKER_WAIT; unset or empty is the default,
// as an empty EBB_BROKER is.
func brokerWaitFromEnv() (time.Duration, error) {
	v := strings.TrimSpace(os.Getenv(brokerWaitEnv))
	if v == "" {
		return brokerWaitDefault, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, usagef("%s %q: use a duration such as 30s or 5m (0 fails at once)", brokerWaitEnv, v)
	}
	return d, nil
}

// openBrokerWait opens the broker for a long-running command, waiting up to
// maxWait for it to come up. A stop signal during the wait is a clean exit
// (nil broker, nil error): the process was asked to stop and did, and
// orchestrators that stop a pod whose broker never came up should not
// record a failure for it.
func openBrokerWait(ctx context.Context, e *env, url string, maxWait time.Duration) (*brokerurl.Broker, error) {
	b, err := brokerurl.OpenWait(ctx, url, maxWait, e.logger)
	if err != nil && ctx.Err() != nil {
		e.logger.Info("stopped before the broker was reachable", "broker", brokerurl.Redact(url))
		return nil, nil
	}
	return b, err
}
