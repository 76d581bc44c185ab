package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/internal/brokerurl"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/server"
)

func runServer(e *env, args []string) error {
	f := newFlagSet(e, "server", "server [--config ebb.yaml] [flags]",
		"ebb server --config ebb.yaml   # see ebb.example.yaml")
	path := f.String("config", "", "YAML config file (default: none; built-in defaults and EBB_* variables)")
	listen := f.String("listen", "", "API address host:port (overrides server.listen and EBB_LISTEN)")
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
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{msg: "invalid config:\n" + err.Error()}
	}
	return serve(e, cfg, false)
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
	}
	cfg.Server.Listen = *listen
	for i := range cfg.Pools {
		cfg.Pools[i].Max = *maxWorkers
		cfg.Pools[i].Concurrency = *concurrency
		cfg.Pools[i].Policy.IdleBeforeZero = *idle
		cfg.Pools[i].Policy.ScaleDownDelay = min(cfg.Pools[i].Policy.ScaleDownDelay, *idle)
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{msg: "invalid settings:\n" + err.Error()}
	}
	return serve(e, cfg, true)
}

func serve(e *env, cfg *config.Config, up bool) error {
	ctx, stop := signalContext()
	defer stop()
	drv, err := brokerurl.Open(ctx, cfg.Broker)
	if err != nil {
		return err
	}
	defer drv.Close()
	srv, err := server.New(server.Options{Config: cfg, Driver: drv, Logger: e.logger})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
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
	return srv.Run(ctx)
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

func runInspectScaling(e *env, f *flagSet, asJSON bool, pool string, limit int) error {
	ctx, drv, closeBroker, err := f.openBroker()
	if err != nil {
		return err
	}
	defer closeBroker()
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	ctl, ok := drv.(ebbdriver.Control)
	if !ok {
		return errors.New("this broker keeps no scaling decisions")
	}
	ds, err := ctl.DecisionList(ctx, pool, limit)
	if err != nil {
		return err
	}
	if asJSON {
		if ds == nil {
			ds = []ebbdriver.Decision{}
		}
		return printJSON(e.stdout, ds)
	}
	if len(ds) == 0 {
		fmt.Fprintln(e.stdout, "no scaling decisions yet (is `ebb server` or `ebb up` running?)")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tPOOL\tCHANGE\tTERM\tREASON")
	for i := len(ds) - 1; i >= 0; i-- {
		d := ds[i]
		fmt.Fprintf(tw, "%s\t%s\t%d→%d\t%d\t%s\n", d.At.Local().Format("15:04:05.000"), d.Pool, d.From, d.To, d.Term, d.Reason)
	}
	return tw.Flush()
}
