package cli

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ebbq/ebb/internal/brokerurl"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/controlplane"
	"github.com/ebbq/ebb/internal/httpserver"
	"github.com/ebbq/ebb/internal/kedascaler"
)

const kedaAddrEnv = "EBB_KEDA_ADDR"

func runServer(e *env, args []string) error {
	f := newFlagSet(e, "server", "server [--config ebb.yaml] [flags]",
		"ebb server --config ebb.yaml   # see ebb.example.yaml")
	path := f.String("config", "", "YAML config file (default: none; built-in defaults and EBB_* variables)")
	listen := f.String("listen", "", "API address host:port (overrides server.listen and EBB_LISTEN)")
	kedaAddr := f.String("keda-addr", os.Getenv(kedaAddrEnv), "serve KEDA's external-push scaler (gRPC) on host:port, e.g. :9090 in a pod; empty: off (env "+kedaAddrEnv+")")
	wait := newBrokerWait(f)
	if pos, err := f.parse(e, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q (see --help)", pos[0])
	}
	cfg, err := config.Load(*path, os.Environ())
	if err != nil {
		return &usageError{msg: "invalid config:\n" + err.Error()}
	}
	if flagSetByUser(f, "broker") {
		cfg.Broker = *f.broker
		cfg.SetByFlag("broker", "--broker")
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
		cfg.SetByFlag("server.listen", "--listen")
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{msg: "invalid config:\n" + err.Error()}
	}
	return serveWith(e, cfg, false, wait, *kedaAddr)
}

// runUp is the embedded all-in-one: SQLite at ./ebb.db, the control plane and
// one local pool "default" (0 to 4 workers), no config needed.
func runUp(e *env, args []string) error {
	f := newFlagSet(e, "up", "up [--max N] [--listen host:port] [flags]",
		"ebb up    # then, in another terminal: ebb enqueue sleep '{\"ms\": 2000}' --count 200")
	maxWorkers := f.Int("max", config.MaxDefault, "most workers in the default pool")
	concurrency := f.Int("concurrency", config.ConcurrencyDefault, "task slots per worker")
	listen := f.String("listen", config.ListenDefault, "API address (loopback needs no token)")
	idle := f.Duration("idle-before-zero", 10*time.Second, "how long the pool stays up after the last task")
	wait := newBrokerWait(f)
	if pos, err := f.parse(e, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q (see --help)", pos[0])
	}
	cfg, err := config.Load("", os.Environ())
	if err != nil {
		return &usageError{msg: "invalid config:\n" + err.Error()}
	}
	if flagSetByUser(f, "broker") {
		cfg.Broker = *f.broker
		cfg.SetByFlag("broker", "--broker")
	}
	// The flags below apply even when not typed, so their defaults are
	// theirs to report too.
	cfg.Server.Listen = *listen
	cfg.SetByFlag("server.listen", "--listen")
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		path := fmt.Sprintf("pools[%d]", i)
		p.Max = *maxWorkers
		cfg.SetByFlag(path+".max", "--max")
		p.Concurrency = *concurrency
		cfg.SetByFlag(path+".concurrency", "--concurrency")
		p.Policy.IdleBeforeZero = *idle
		cfg.SetByFlag(path+".policy.idle_before_zero", "--idle-before-zero")
		// A bad --idle-before-zero is one problem, not a second one in the
		// delay derived from it.
		if *idle > 0 {
			p.Policy.ScaleDownDelay = min(p.Policy.ScaleDownDelay, *idle)
		}
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{msg: "invalid settings:\n" + err.Error()}
	}
	return serve(e, cfg, true, wait)
}

func serve(e *env, cfg *config.Config, up bool, wait *brokerWait) error {
	return serveWith(e, cfg, up, wait, "")
}

func serveWith(e *env, cfg *config.Config, up bool, wait *brokerWait, kedaAddr string) error {
	maxWait, err := wait.value()
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	b, err := openBrokerWait(ctx, e, cfg.Broker, maxWait)
	if b == nil {
		return err
	}
	defer b.Close()
	cp, err := controlplane.New(controlplane.Options{Config: cfg, Driver: b.Driver(), Logger: e.logger})
	if err != nil {
		return err
	}
	srv, err := httpserver.New(httpserver.Options{Config: cfg.Server, Client: b.Client, Control: cp, Logger: e.logger.With("server", cp.ID())})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	if kedaAddr != "" {
		kctx, stopKEDA := context.WithCancel(ctx)
		defer stopKEDA()
		if _, _, err := kedascaler.New(cp, e.logger.With("server", cp.ID())).Serve(kctx, kedaAddr); err != nil {
			return usagef("--keda-addr %q: %v", kedaAddr, err)
		}
	}
	if up {
		where := cfg.Broker
		if p, ok := strings.CutPrefix(where, "sqlite:"); ok {
			if abs, err := filepath.Abs(p); err == nil {
				where = "sqlite:" + abs
			}
		}
		fmt.Fprintf(e.stdout, "ebb is up\n  broker     %s\n  dashboard  http://%[2]s/\n  api        http://%[2]s/api/v1/queues\n  pool       default: 0 to %d workers, logs in %s/\n\nTry:  ebb enqueue sleep '{\"ms\": 2000}' --count 200\n      ebb inspect scaling\nCtrl-C drains the workers and stops.\n",
			brokerurl.Redact(where), srv.Addr(), cfg.Pools[0].Max, cfg.Pools[0].LogDir)
	}
	// The API keeps serving while the control plane drains the pools, so
	// dashboards and health checks see the shutdown through; it stops once
	// the control plane has.
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Run(httpCtx) }()
	cpErr := cp.Run(ctx)
	stopHTTP()
	return cmp.Or(cpErr, <-httpDone)
}

// flagSetByUser tells an explicit --broker from its default, which already
// folds in EBB_BROKER; the config file's broker wins over the default only.
func flagSetByUser(f *flagSet, name string) bool {
	set := false
	f.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			set = true
		}
	})
	return set
}
