package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/brokerurl"
	"github.com/ebbq/ebb/internal/builtin"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/ebbq/ebb/internal/ecsagent"
	"github.com/ebbq/ebb/internal/procmem"
)

func runWorker(e *env, args []string) error {
	f := newFlagSet(e, "worker", "worker [--queues a,b] [--concurrency N] [flags]",
		"ebb worker --broker redis://127.0.0.1:6379/0 --queues critical,default --concurrency 50")
	queues := f.String("queues", ebb.QueueDefault, "queues to serve, in strict order (a,b) or weighted (a:3,b:1)")
	concurrency := f.Int("concurrency", ebb.ConcurrencyDefault, "tasks run at once")
	drain := f.Duration("drain-timeout", ebb.DrainTimeoutDefault, "on SIGTERM/SIGINT, how long running tasks may finish before they are handed back")
	lease := f.Duration("lease", ebb.LeaseDurationDefault, "how long the worker owns a task between heartbeats before others may rescue it")
	heartbeat := f.Duration("heartbeat", ebb.HeartbeatIntervalDefault, "lease renewal and registry heartbeat interval (less than --lease)")
	id := f.String("id", os.Getenv(workerIDEnv), "worker id in the registry (default: the ECS task id on ECS; on kubernetes the pod name from "+podNameEnv+
		" (downward API), else the host name, which is the pod's; elsewhere host-pid-random; env "+workerIDEnv+")")
	healthAddr := f.String("health-addr", "", "serve /livez, /readyz and POST /drain (loopback only; for the preStop hook) on this address, "+
		"e.g. :8081 in a pod; empty: off")
	pool := f.String("pool", "", "pool name, when run by the autoscaler")
	platformDef := os.Getenv(platformEnv)
	if platformDef == "" {
		platformDef = platformAuto
	}
	platform := f.String("platform", platformDef, "where the worker runs: auto (ecs when the ECS agent's variables "+ecsagent.EnvMetadataURI+
		" and "+ecsagent.EnvAgentURI+" are set, else none), ecs, kubernetes or none. On ecs and kubernetes a worker asked to drain "+
		"stays up drained until the platform stops it, since the platform would replace a worker that exits; on ecs it also holds "+
		"task scale-in protection while it may hold tasks (env "+platformEnv+")")
	protExpiry := f.Duration("protection-expiry", ecsagent.ExpiryDefault, "ecs: how long one grant of task scale-in protection lasts (whole minutes, at most 48h): "+
		"how long a worker that died without releasing it keeps its task from being scaled in or replaced by a deploy")
	protRenew := f.Duration("protection-renew", ecsagent.RenewEveryDefault, "ecs: how often the protection is renewed while the worker is not drained (less than --protection-expiry)")
	holdTimeout := f.Duration("hold-timeout", ebb.HoldTimeoutDefault, "ecs, kubernetes: how long a drained worker waits for the platform to stop it before it exits anyway")
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
	if *holdTimeout < 0 {
		return usagef("--hold-timeout %s: must not be negative", *holdTimeout)
	}
	plat, err := resolvePlatform(*platform, os.Getenv)
	if err != nil {
		return err
	}

	ctx, stop := signalContext()
	defer stop()
	var guard ebb.ScaleInGuard
	hold := plat.name != platformNone
	var taskARN string
	if plat.name == platformECS {
		agent, err := ecsagent.New(ecsagent.Config{MetadataURI: plat.metadataURI, AgentURI: plat.agentURI, Expiry: *protExpiry, RenewEvery: *protRenew})
		if err != nil {
			return usagef("--protection-expiry %s, --protection-renew %s: %v", *protExpiry, *protRenew, strings.TrimPrefix(err.Error(), "ecsagent: "))
		}
		taskARN, err = taskARNWait(ctx, e, agent)
		if err != nil {
			if ctx.Err() != nil {
				e.logger.Info("stopped before the task metadata was read")
				return nil
			}
			return err
		}
		if *id == "" {
			if *id, err = ecsagent.TaskID(taskARN); err != nil {
				return err
			}
		}
		guard = agent
	}
	if plat.name == platformKubernetes && *id == "" {
		if *id = os.Getenv(podNameEnv); *id == "" {
			// A pod's host name is its name (cut at 63 characters).
			*id, _ = os.Hostname()
			e.logger.Warn(podNameEnv+" is not set; registering with the host name: set it from the downward API (fieldRef metadata.name) so the registry and the pods line up", "id", *id)
		}
	}
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
		ScaleInGuard:      guard,
		HoldAfterDrain:    hold,
		HoldTimeout:       *holdTimeout,
	})
	if err != nil {
		return usagef("%v", err)
	}
	attrs := []any{"platform", plat.name, "worker", w.ID()}
	switch plat.name {
	case platformECS:
		attrs = append(attrs, "task", taskARN, "protection_expiry", *protExpiry, "protection_renew", *protRenew, "hold_timeout", *holdTimeout)
	case platformKubernetes:
		attrs = append(attrs, "hold_timeout", *holdTimeout)
	}
	e.logger.Info("platform "+plat.name+" ("+plat.source+")", attrs...)
	if *healthAddr != "" {
		if err := serveHealth(ctx, e, *healthAddr, w); err != nil {
			return err
		}
	}
	go releaseStartupPages(ctx, e.logger, w, procmem.ReleaseStartupPages)
	return w.Run(ctx)
}

// releaseStartupPages gives back the binary's pages that start-up touched:
// once Run has registered the worker, and once more a heartbeat interval
// and two seconds later, when each periodic duty (heartbeat, maintenance
// pass, poll) has run once. From then on an idle worker runs a few loops,
// not the init code of every package the binary links; but the first run
// of the duties pulls in code that the later runs do not touch (about
// 8 MiB on SQLite, measured by hand), and a single release at Running kept
// it resident for good.
func releaseStartupPages(ctx context.Context, logger *slog.Logger, w interface{ Health() ebb.WorkerHealth }, release func() (procmem.Released, error)) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	h := w.Health()
	for !h.Running {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h = w.Health()
	}
	releaseRound := func(round int) bool {
		r, err := release()
		if err != nil {
			logger.Debug("could not release start-up pages", "err", err)
			return false
		}
		logger.Debug("released start-up pages", "round", round, "mappings", r.Mappings, "bytes", r.Bytes, "skipped", r.Skipped)
		return true
	}
	if !releaseRound(1) {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(h.HeartbeatInterval + 2*time.Second):
	}
	releaseRound(2)
}

// The values of --platform.
const (
	platformAuto       = "auto"
	platformECS        = "ecs"
	platformKubernetes = "kubernetes"
	platformNone       = "none"
	platformEnv        = "EBB_PLATFORM"
	workerIDEnv        = "EBB_WORKER_ID"
	podNameEnv         = "POD_NAME"
)

type platform struct {
	name, source          string
	metadataURI, agentURI string // ecs
}

// resolvePlatform turns --platform into the platform the worker runs on.
// Only ECS is detected: its agent sets two variables in every container of
// a task, while nothing as specific marks a pod whose platform owns the
// replica count (a pod of a Job, or one run by the local target on a
// Kubernetes node, must exit after a drain).
func resolvePlatform(flagValue string, getenv func(string) string) (platform, error) {
	meta, agent, onECS := ecsagent.FromEnv(getenv)
	switch flagValue {
	case platformAuto:
		if onECS {
			return platform{name: platformECS, source: "detected from " + ecsagent.EnvMetadataURI + " and " + ecsagent.EnvAgentURI,
				metadataURI: meta, agentURI: agent}, nil
		}
		return platform{name: platformNone, source: "no platform detected"}, nil
	case platformECS:
		if !onECS {
			return platform{}, usagef("--platform ecs: %s and %s must both be set (the ECS agent sets them in every container of a task)",
				ecsagent.EnvMetadataURI, ecsagent.EnvAgentURI)
		}
		return platform{name: platformECS, source: "--platform ecs", metadataURI: meta, agentURI: agent}, nil
	case platformKubernetes:
		return platform{name: platformKubernetes, source: "--platform kubernetes: the control plane marks busy pods' deletion cost"}, nil
	case platformNone:
		return platform{name: platformNone, source: "--platform none"}, nil
	}
	return platform{}, usagef("--platform %q: use auto, ecs, kubernetes or none", flagValue)
}

// taskMetadataWait bounds the wait for the task metadata endpoint, which the
// agent serves from the moment the container starts; a minute covers an
// agent that restarts meanwhile.
const taskMetadataWait = time.Minute

// taskARNWait reads the task's ARN, retrying with backoff for up to
// taskMetadataWait.
func taskARNWait(ctx context.Context, e *env, agent *ecsagent.Client) (string, error) {
	deadline := time.Now().Add(taskMetadataWait)
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		arn, err := agent.TaskARN(ctx)
		if err == nil {
			return arn, nil
		}
		if ctx.Err() != nil || time.Now().Add(delay).After(deadline) {
			return "", fmt.Errorf("cannot read the ECS task metadata (needed for the worker id and scale-in protection): %w", err)
		}
		e.logger.Warn("task metadata not readable yet; retrying", "attempt", attempt, "error", err, "retry_in", delay)
		if !clock.Sleep(ctx, delay) {
			return "", ctx.Err()
		}
		delay = min(2*delay, 5*time.Second)
	}
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
