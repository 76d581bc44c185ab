// Package config is the control plane's configuration (`ebb server --config
// ebb.yaml`): a YAML file, then EBB_* environment variables on top of it, then
// validation that reports every problem at once, each named by its field path.
//
// The commented example at the repository root (ebb.example.yaml) is the
// user-facing reference; the XxxDefault constants here are the source of the
// defaults it documents.
package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/brokerurl"
	"github.com/ebbq/ebb/internal/maintenance"
	"github.com/ebbq/ebb/internal/schedule"
)

// Config is the whole control-plane configuration.
type Config struct {
	// Broker is the broker URL, as for every other command. Default
	// BrokerDefault; env EBB_BROKER.
	Broker string `yaml:"broker"`

	Server      Server      `yaml:"server"`
	Leader      Leader      `yaml:"leader"`
	Maintenance Maintenance `yaml:"maintenance"`
	Autoscaler  Autoscaler  `yaml:"autoscaler"`

	// Pools are the autoscaled worker pools. Default: one pool named
	// "default" serving the queue "default" (see DefaultPool). A file's pools
	// replace the default pool; an empty list means no pools (maintenance
	// and the API only).
	Pools []Pool `yaml:"pools"`

	// Schedules are beat's periodic tasks from the file. The leader stores
	// them in the broker when it is elected (replacing the definitions of
	// the same names, keeping their firing state), next to the schedules
	// added at runtime with `ebb schedule add` or the API.
	Schedules []Schedule `yaml:"schedules,omitempty"`

	// origins maps field paths to where their value came from ("line 12",
	// "from EBB_POOL_X_MAX"), so validation errors can point there. Only Load
	// fills it; a Config built in Go validates without origins.
	origins map[string]string
	// flags maps field paths to the command-line flag that set them; see
	// SetByFlag.
	flags map[string]string
}

// SetByFlag records that the value at path (as in Problem.Path, e.g.
// "pools[0].concurrency") was set by the command-line flag named flag
// ("--concurrency"). Validate then names a problem with it by the flag the
// user typed, without an origin, rather than by a path they never wrote.
func (c *Config) SetByFlag(path, flag string) {
	if c.flags == nil {
		c.flags = map[string]string{}
	}
	c.flags[path] = flag
}

// BrokerDefault is the embedded SQLite broker, as on the command line.
const BrokerDefault = brokerurl.Default

// Server is the HTTP API.
type Server struct {
	// Listen is the API's host:port. Default ListenDefault; env EBB_LISTEN.
	Listen string `yaml:"listen"`
	// Token is the bearer token the API requires. Required when Listen is not
	// a loopback address, at least TokenMinLength characters; env EBB_TOKEN.
	Token Secret `yaml:"token,omitempty"`
	// ReadOnly makes the API refuse every change (enqueue, cancel, retry,
	// purge, drain), for dashboards. Default false; env EBB_READ_ONLY.
	ReadOnly bool `yaml:"read_only"`
}

// Server defaults and limits.
const (
	// ListenDefault is loopback so that a server started without a config
	// exposes nothing and needs no token.
	ListenDefault = "127.0.0.1:8080"
	// TokenMinLength keeps guessable tokens out; `openssl rand -hex 32`
	// gives 64 characters.
	TokenMinLength = 16
)

// Leader is the lease that picks the one control-plane replica that scales
// pools, so several `ebb server` processes can share a broker.
type Leader struct {
	// TTL is how long leadership lasts without renewal: after a leader dies,
	// another replica takes over within TTL. Default LeaderTTLDefault.
	TTL time.Duration `yaml:"ttl"`
	// RenewInterval must be less than TTL/2 so a leader survives one missed
	// renewal. Default LeaderRenewIntervalDefault.
	RenewInterval time.Duration `yaml:"renew_interval"`
}

// Leader defaults: a dead leader is replaced within TTL + one renew interval
// (8.5 s), a renewal can fail once before leadership is lost, and renewals
// cost the broker 0.4 commands per second — most of an idle server's budget.
const (
	LeaderTTLDefault           = 6 * time.Second
	LeaderRenewIntervalDefault = 2500 * time.Millisecond
)

// Maintenance is the broker housekeeping the control plane runs for every
// queue, so it goes on while pools are at zero (see internal/maintenance).
type Maintenance struct {
	// RescueInterval is how often expired leases are rescued and due
	// scheduled and retrying tasks promoted. Default RescueIntervalDefault.
	RescueInterval time.Duration `yaml:"rescue_interval"`
	// CleanupInterval is how often finished and dead tasks past their
	// retention are deleted. Default CleanupIntervalDefault.
	CleanupInterval time.Duration `yaml:"cleanup_interval"`
	// DeadRetention is how long dead tasks are kept for `ebb dead retry`.
	// Default DeadRetentionDefault.
	DeadRetention time.Duration `yaml:"dead_retention"`
}

// Maintenance defaults are the workers' own, so a queue is looked after the
// same way whoever runs the pass.
const (
	RescueIntervalDefault  = maintenance.RescueIntervalDefault
	CleanupIntervalDefault = maintenance.CleanupIntervalDefault
	DeadRetentionDefault   = maintenance.DeadRetentionDefault
)

// Autoscaler sizes the pools.
type Autoscaler struct {
	// ReconcileInterval is the backstop pass when no notification arrives:
	// it catches lost notifications, crashed workers and the time-based
	// rules (max wait, scale-down delay, idle before zero). Default
	// ReconcileIntervalDefault.
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
}

// ReconcileIntervalDefault bounds how late a time-based decision can be.
const ReconcileIntervalDefault = 5 * time.Second

// Target kinds, each valid in a pool.
const (
	TargetLocal      = "local"
	TargetKubernetes = "kubernetes"
	TargetECS        = "ecs"
)

// Pool is a group of identical workers that the autoscaler starts and drains.
type Pool struct {
	// Name identifies the pool in the worker registry, logs and EBB_POOL_*
	// variables: 1–128 characters of [A-Za-z0-9_.:-]. Required.
	Name string `yaml:"name"`
	// Queues the pool's workers serve, as `ebb worker --queues` takes them:
	// names in strict order, or every entry as name:weight for weighted
	// order. A queue belongs to at most one pool. Default [Name]; env
	// EBB_POOL_<NAME>_QUEUES (comma list).
	Queues []string `yaml:"queues"`
	// Target is where workers run: TargetLocal (child processes of the
	// server) or TargetECS (the tasks of an ECS service, see ECS). Default
	// TargetDefault.
	Target string `yaml:"target"`
	// ECS is the service an ecs pool scales; only an ecs pool may set it.
	ECS ECS `yaml:"ecs,omitempty"`
	// Celery, when set, makes this a pool of Celery workers (see Celery).
	Celery *Celery `yaml:"celery,omitempty"`
	// Kubernetes is the workload a kubernetes pool scales; only a kubernetes
	// pool may set it.
	Kubernetes Kubernetes `yaml:"kubernetes,omitempty"`
	// Min and Max bound the number of workers: 0 ≤ Min ≤ Max, Max ≥ 1.
	// Defaults MinDefault and MaxDefault; env EBB_POOL_<NAME>_MIN, _MAX.
	Min int `yaml:"min"`
	Max int `yaml:"max"`
	// Concurrency is each worker's number of task slots. Default
	// ConcurrencyDefault; env EBB_POOL_<NAME>_CONCURRENCY.
	Concurrency int `yaml:"concurrency"`
	// Command is a worker's argv. Empty (the default) runs the server's own
	// binary as `ebb worker`, which handles the built-in kinds only; set it
	// to run your own binary with your handlers.
	Command []string `yaml:"command,omitempty"`
	// Env is added to each worker's environment.
	Env map[string]string `yaml:"env,omitempty"`
	// LogDir receives one log file per worker process, relative to the
	// server's working directory. Default LogDirDefault.
	LogDir string `yaml:"log_dir"`
	// DrainTimeout is how long a draining worker's running tasks may finish
	// before they are handed back. Default DrainTimeoutDefault.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// StopGrace is how long the target waits after SIGTERM before it kills a
	// worker; it must exceed DrainTimeout so the hand-back completes.
	// Default StopGraceDefault.
	StopGrace time.Duration `yaml:"stop_grace"`

	Policy Policy `yaml:"policy"`
}

// ECS is the service whose tasks are an ecs pool's workers. The service and
// its task definition are made outside ebb: the task runs `ebb worker` (or
// your binary's worker) for the pool's queues, registering with its task id,
// and holds its own scale-in protection until it is drained. The control
// plane only moves the service's desired count. The pool's command, env and
// log_dir do not apply (the task definition has its own); nor do
// drain_timeout and stop_grace, which are the worker's --drain-timeout and
// the task definition's stopTimeout there. Credentials come from the AWS
// SDK's default chain (the server's task role, AWS_* variables, shared
// files).
type ECS struct {
	// Cluster is the cluster's name or ARN. Required for an ecs pool; env
	// EBB_POOL_<NAME>_ECS_CLUSTER.
	Cluster string `yaml:"cluster,omitempty"`
	// Service is the service's name or ARN. Required for an ecs pool; env
	// EBB_POOL_<NAME>_ECS_SERVICE.
	Service string `yaml:"service,omitempty"`
	// Region is the service's AWS region. Load fills it from AWS_REGION, or
	// else AWS_DEFAULT_REGION, as the SDK would; a region in a shared config
	// profile is not looked at, so it is required when neither is set. Env
	// EBB_POOL_<NAME>_ECS_REGION.
	Region string `yaml:"region,omitempty"`
	// Endpoint replaces the ECS endpoint URL: a VPC endpoint, or a test
	// server. Default the SDK's, which honours AWS_ENDPOINT_URL_ECS; env
	// EBB_POOL_<NAME>_ECS_ENDPOINT.
	Endpoint string `yaml:"endpoint,omitempty"`
}

// Kubernetes is the Deployment (or StatefulSet) whose pods are a kubernetes
// pool's workers. The workload is made outside ebb (Helm, kustomize,
// GitOps): its pods run `ebb worker --platform kubernetes` for the pool,
// registering with their pod name. The control plane only moves the
// replica count through the scale subresource and marks pods' deletion
// costs. The pool's command, env, log_dir and stop_grace do not apply (the
// pod template has its own; the grace is terminationGracePeriodSeconds).
type Kubernetes struct {
	// Namespace holds the workload. Default: the server's own namespace in a
	// cluster, else the kubeconfig context's; env
	// EBB_POOL_<NAME>_KUBERNETES_NAMESPACE.
	Namespace string `yaml:"namespace,omitempty"`
	// Deployment names the workload; exactly one of Deployment and
	// StatefulSet is required. Env EBB_POOL_<NAME>_KUBERNETES_DEPLOYMENT.
	Deployment string `yaml:"deployment,omitempty"`
	// StatefulSet names the workload instead of a Deployment. Env
	// EBB_POOL_<NAME>_KUBERNETES_STATEFULSET.
	StatefulSet string `yaml:"statefulset,omitempty"`
	// Kubeconfig is a kubeconfig file. Default: the in-cluster service
	// account when the server runs in a pod, else $KUBECONFIG or
	// ~/.kube/config; env EBB_POOL_<NAME>_KUBERNETES_KUBECONFIG.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// KEDA hands the replica count to KEDA (a ScaledObject pointing at the
	// server's external-push scaler): the control plane then never changes
	// the count or drains workers, and only keeps busy pods' deletion costs
	// high. Env EBB_POOL_<NAME>_KUBERNETES_KEDA.
	KEDA bool `yaml:"keda,omitempty"`
}

// Pool defaults.
const (
	TargetDefault = TargetLocal
	MinDefault    = 0 // scale to zero
	MaxDefault    = 4
	// ConcurrencyDefault is lower than a standalone worker's
	// (ebb.ConcurrencyDefault): the autoscaler adds processes as backlog
	// grows, so each one needs fewer slots, and fewer tasks are disturbed
	// when one is drained.
	ConcurrencyDefault  = 10
	LogDirDefault       = "ebb-logs"
	DrainTimeoutDefault = ebb.DrainTimeoutDefault
	// StopGraceDefault leaves 5 s after DrainTimeoutDefault for hand-back,
	// and matches Kubernetes' default termination grace.
	StopGraceDefault = 30 * time.Second
)

// Policy is how the autoscaler picks a pool's size between Min and Max.
type Policy struct {
	// BacklogPerWorker is how many tasks (queued + in flight) one worker is
	// expected to hold; the desired size is the backlog divided by it,
	// rounded up. 0 (the default) means the pool's Concurrency. Env
	// EBB_POOL_<NAME>_BACKLOG_PER_WORKER.
	BacklogPerWorker int `yaml:"backlog_per_worker"`
	// MaxWait is the age SLO: when the oldest queued task has waited longer,
	// add a worker whatever the backlog says. Default MaxWaitDefault; env
	// EBB_POOL_<NAME>_MAX_WAIT.
	MaxWait time.Duration `yaml:"max_wait"`
	// ScaleDownDelay: scale down only to the largest desired size seen over
	// this window, so a bursty queue does not churn processes. Default
	// DelayDerived (from the pool's measured start-up: 0, since packing
	// empties whole workers); env EBB_POOL_<NAME>_SCALE_DOWN_DELAY.
	ScaleDownDelay time.Duration `yaml:"scale_down_delay"`
	// IdleBeforeZero: go to zero workers only after queued and in flight
	// were both zero this long. Default DelayDerived (the pool's measured
	// start-up: an idle worker kept longer costs more than starting one);
	// env EBB_POOL_<NAME>_IDLE_BEFORE_ZERO.
	IdleBeforeZero time.Duration `yaml:"idle_before_zero"`
	// MaxStep is the most workers added in one decision; 0 (the default)
	// means no limit. Env EBB_POOL_<NAME>_MAX_STEP.
	MaxStep int `yaml:"max_step"`
}

// Policy defaults.
const (
	BacklogPerWorkerDefault = 0 // the pool's concurrency
	MaxWaitDefault          = 30 * time.Second
	// The delays default to being derived from the pool's start-up time,
	// which the control plane measures (the rent-or-buy break-even).
	ScaleDownDelayDefault = DelayDerived
	IdleBeforeZeroDefault = DelayDerived
	MaxStepDefault        = 0 // no limit
)

// DelayDerived, as a policy delay, means "not set: derive it from the pool's
// start-up time". Validation rejects every other negative duration, so only
// a file that writes exactly -1ns could mean it by accident.
const DelayDerived time.Duration = -1

// Default returns the configuration used without a file: the embedded
// broker, the API on loopback without a token, and one pool "default".
func Default() *Config {
	return &Config{
		Broker: BrokerDefault,
		Server: Server{Listen: ListenDefault},
		Leader: Leader{TTL: LeaderTTLDefault, RenewInterval: LeaderRenewIntervalDefault},
		Maintenance: Maintenance{
			RescueInterval:  RescueIntervalDefault,
			CleanupInterval: CleanupIntervalDefault,
			DeadRetention:   DeadRetentionDefault,
		},
		Autoscaler: Autoscaler{ReconcileInterval: ReconcileIntervalDefault},
		Pools:      []Pool{DefaultPool(ebb.QueueDefault)},
	}
}

// DefaultPool returns a pool with every default, serving the queue of its
// own name.
func DefaultPool(name string) Pool {
	return Pool{
		Name:         name,
		Queues:       []string{name},
		Target:       TargetDefault,
		Min:          MinDefault,
		Max:          MaxDefault,
		Concurrency:  ConcurrencyDefault,
		LogDir:       LogDirDefault,
		DrainTimeout: DrainTimeoutDefault,
		StopGrace:    StopGraceDefault,
		Policy: Policy{
			BacklogPerWorker: BacklogPerWorkerDefault,
			MaxWait:          MaxWaitDefault,
			ScaleDownDelay:   ScaleDownDelayDefault,
			IdleBeforeZero:   IdleBeforeZeroDefault,
			MaxStep:          MaxStepDefault,
		},
	}
}

// BacklogPerWorker is the policy's value, or the pool's concurrency when the
// policy leaves it at 0.
func (p *Pool) BacklogPerWorker() int {
	if p.Policy.BacklogPerWorker > 0 {
		return p.Policy.BacklogPerWorker
	}
	return p.Concurrency
}

// QueueConfigs returns the queues as a worker takes them. It assumes a
// validated pool.
func (p *Pool) QueueConfigs() []ebb.QueueConfig {
	out := make([]ebb.QueueConfig, 0, len(p.Queues))
	for _, q := range p.Queues {
		name, weight, _ := splitQueue(q)
		out = append(out, ebb.QueueConfig{Name: name, Weight: weight})
	}
	return out
}

// EnvPrefix is the prefix of the pool's override variables, e.g.
// EBB_POOL_REPORTS_ for "reports": upper case, with -, . and : (which
// variable names cannot hold) turned into _.
func (p *Pool) EnvPrefix() string {
	return "EBB_POOL_" + envName(p.Name) + "_"
}

func envName(pool string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', '.', ':':
			return '_'
		}
		return r
	}, strings.ToUpper(pool))
}

// Secret is a string that never prints: fmt, slog, JSON and YAML all show a
// mask, so a token cannot leak through a logged struct. Use string(s) where
// the value itself is needed.
type Secret string

const mask = "xxxxx" // as brokerurl.Redact

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return mask
}

// GoString masks %#v too.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// LogValue masks the secret in slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON masks the secret in JSON.
func (s Secret) MarshalJSON() ([]byte, error) { return fmt.Appendf(nil, "%q", s.String()), nil }

// MarshalYAML masks the secret in YAML.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Redacted returns a deep copy that is safe to log or show: the token and
// the broker URL's password are masked, and so are the values of pool env
// variables, which commonly carry credentials for the workers. It is for
// display only; the masked token does not validate.
func (c *Config) Redacted() *Config {
	r := *c
	r.Broker = brokerurl.Redact(c.Broker)
	if r.Server.Token != "" {
		r.Server.Token = mask
	}
	r.Pools = slices.Clone(c.Pools)
	for i := range r.Pools {
		p := &r.Pools[i]
		p.Queues = slices.Clone(p.Queues)
		p.Command = slices.Clone(p.Command)
		if p.Celery != nil {
			cel := *p.Celery
			cel.Broker = brokerurl.Redact(cel.Broker)
			p.Celery = &cel
		}
		if p.Env != nil {
			p.Env = make(map[string]string, len(p.Env))
			for k := range c.Pools[i].Env {
				p.Env[k] = mask
			}
		}
	}
	r.origins = maps.Clone(c.origins)
	r.flags = maps.Clone(c.flags)
	return &r
}

// String is the redacted configuration as YAML. It has a value receiver so
// that printing a Config, not only a *Config, is redacted.
func (c Config) String() string {
	out, err := yaml.Marshal(c.Redacted())
	if err != nil {
		return fmt.Sprintf("config: %v", err)
	}
	return string(out)
}

// LogValue keeps slog handlers (the JSON one marshals structs field by
// field) from printing secrets, and keeps the log line short.
func (c Config) LogValue() slog.Value {
	names := make([]string, len(c.Pools))
	for i, p := range c.Pools {
		names[i] = p.Name
	}
	return slog.GroupValue(
		slog.String("broker", brokerurl.Redact(c.Broker)),
		slog.String("listen", c.Server.Listen),
		slog.Bool("token", c.Server.Token != ""),
		slog.Bool("read_only", c.Server.ReadOnly),
		slog.String("pools", strings.Join(names, ",")),
	)
}

// Schedule is one periodic task: when it ticks (exactly one of Cron, Every and
// At) and the task each tick enqueues.
type Schedule struct {
	// Name identifies the schedule: 1–128 characters of [A-Za-z0-9_.:-].
	Name string `yaml:"name" json:"name,omitempty"`
	// Cron has 5 fields (minute hour day-of-month month day-of-week), or 6
	// with seconds first, or a descriptor such as @hourly; TZ is its IANA
	// time zone (default UTC).
	Cron string `yaml:"cron,omitempty" json:"cron,omitempty"`
	TZ   string `yaml:"tz,omitempty" json:"tz,omitempty"`
	// Every ticks at a fixed interval (at least 1 s) from the schedule's
	// creation.
	Every time.Duration `yaml:"every,omitempty" json:"every,omitempty"`
	// At ticks once, at an RFC 3339 time.
	At time.Time `yaml:"at,omitempty" json:"at,omitzero"`
	// CatchUp is what happens to ticks missed while no leader ran: "once"
	// (default: the latest missed tick fires once) or "skip".
	CatchUp string `yaml:"catch_up,omitempty" json:"catch_up,omitempty"`

	Kind        string         `yaml:"kind" json:"kind,omitempty"`
	Args        map[string]any `yaml:"args,omitempty" json:"args,omitempty"`
	Queue       string         `yaml:"queue,omitempty" json:"queue,omitempty"`
	Priority    string         `yaml:"priority,omitempty" json:"priority,omitempty"` // high, normal (default) or low
	MaxAttempts int            `yaml:"max_attempts,omitempty" json:"max_attempts,omitempty"`
	Timeout     time.Duration  `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Record converts the schedule to what the broker stores, checking its
// timing (cron syntax, time zone, interval) and options. now stamps
// CreatedAt and UpdatedAt.
func (s *Schedule) Record(now time.Time) (*ebbtype.Schedule, error) {
	args := []byte("{}")
	if len(s.Args) > 0 {
		var err error
		if args, err = json.Marshal(s.Args); err != nil {
			return nil, fmt.Errorf("args cannot be encoded as JSON: %w", err)
		}
	}
	prio := ebb.PriorityNormal
	switch strings.ToLower(s.Priority) {
	case "", "normal":
	case "high":
		prio = ebb.PriorityHigh
	case "low":
		prio = ebb.PriorityLow
	default:
		return nil, fmt.Errorf("priority %q: use high, normal or low", s.Priority)
	}
	queue := s.Queue
	if queue == "" {
		queue = ebb.QueueDefault
	}
	if !ebb.ValidName(queue) {
		return nil, fmt.Errorf("queue %q: use %s", queue, nameChars)
	}
	if s.MaxAttempts < 0 {
		return nil, fmt.Errorf("max_attempts %d is negative", s.MaxAttempts)
	}
	r := &ebbtype.Schedule{
		Name: s.Name, Cron: s.Cron, TZ: s.TZ, Every: s.Every, At: s.At, CatchUp: s.CatchUp,
		Kind: s.Kind, Args: args, Queue: queue, Priority: prio, MaxAttempts: s.MaxAttempts, Timeout: s.Timeout,
		CreatedAt: now, UpdatedAt: now,
	}
	if _, err := schedule.FromRecord(r); err != nil {
		return nil, err
	}
	return r, nil
}
