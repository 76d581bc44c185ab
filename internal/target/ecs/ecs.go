// Package ecs is the target for a pool whose workers are the tasks of an
// Amazon ECS service.
//
// ECS owns the fleet: the service's desired count says how many tasks run,
// the task definition says what they run (`ebb worker`, which registers with
// its task id as worker id), and ECS picks which task to stop when the count
// goes down, among those without scale-in protection. So this target only
// moves the desired count: Launch raises it, Retire lowers it once per
// drained worker (see target.Retirer), and Instances reports the service's
// tasks. The workers protect themselves through the ECS agent until they are
// drained, which is why Protect has nothing to do and why lowering the count
// can only ever stop a drained task.
//
// New makes no AWS call: the service may not exist yet when the server
// starts, and the first call reports that with ErrServiceNotFound.
package ecs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/ebbq/ebb/internal/target"
)

// Config is one pool's ECS service.
type Config struct {
	// Cluster is the cluster's name or ARN. Required.
	Cluster string
	// Service is the service's name or ARN. Required. The service must exist
	// before the pool scales (a desired count of 0 is fine), with a task
	// definition whose container runs `ebb worker` for the pool.
	Service string
	// Region is the service's AWS region. Empty leaves it to the SDK's
	// default chain (AWS_REGION, the shared config profile); New fails if
	// that finds none.
	Region string
	// Endpoint replaces the ECS endpoint the SDK would choose: a VPC
	// endpoint, or a test server. Empty keeps the SDK's choice, which honours
	// AWS_ENDPOINT_URL_ECS.
	Endpoint string
	// Credentials replaces the SDK's default credential chain (environment,
	// shared files, the task or instance role); nil keeps the chain.
	Credentials aws.CredentialsProvider

	// CallTimeout bounds each ECS operation, its retries included, so a hung
	// API cannot stall the pool's reconcile loop. Zero is CallTimeoutDefault.
	CallTimeout time.Duration
	// MaxAttempts is how often the SDK's standard retryer tries an operation
	// that fails with a throttling or transient error. Zero is
	// MaxAttemptsDefault.
	MaxAttempts int
	// MaxBackoff caps the retryer's jittered exponential backoff. Zero is
	// MaxBackoffDefault.
	MaxBackoff time.Duration

	// GuardTasks makes the control plane hold the tasks' scale-in
	// protection (UpdateTaskProtection) for workers that cannot hold their
	// own through the ECS agent, such as Celery's: Protect then protects
	// every task it is given and releases every other task it listed, and
	// Retire lowers the count only while every task it does not retire is
	// running and protected, so ECS can pick only a retired one.
	GuardTasks bool

	// Logger receives the count changes and what Retire ignores; nil
	// discards.
	Logger *slog.Logger
}

// Defaults. The retryer's backoffs for throttling add up to at most
// 1+2+4+5 s over five attempts, which fits in the call timeout, so a
// throttled call gets all its attempts before it is given up.
const (
	CallTimeoutDefault = 15 * time.Second
	MaxAttemptsDefault = 5
	MaxBackoffDefault  = 5 * time.Second
)

// retireGrace is how long a retired task that ECS keeps running stays
// retired. ECS stops an excess task within seconds; one that is still running
// after this while the service has no excess means the lowered count went to
// another task (an unprotected one that was still starting), or a Launch
// raised it again: the task is forgotten so that the control plane can retire
// it once more. The wait covers reads of the service that predate the update.
// When ECS is seen stopping a task that was never retired, prune forgets
// the retired tasks that stop leaves running without waiting (see prune).
const retireGrace = time.Minute

// ErrServiceNotFound is in the chain of every error about a cluster or
// service that does not exist or is no longer active (INACTIVE, DRAINING).
var ErrServiceNotFound = errors.New("ECS service not found")

// Task statuses (ECS's lastStatus and desiredStatus).
const (
	statusStopped = "STOPPED"
	statusRunning = "RUNNING"
)

// pendingPrefix names the placeholders for tasks ECS was asked for and has
// not listed yet.
const pendingPrefix = "ecs-pending-"

// describeBatch is DescribeTasks' limit of tasks per call.
const describeBatch = 100

// Target scales one ECS service. It is safe for concurrent use.
type Target struct {
	client      *ecs.Client
	cluster     string
	service     string
	region      string
	callTimeout time.Duration
	logger      *slog.Logger
	now         func() time.Time

	// opMu serializes Launch and Retire: each reads the desired count and
	// writes a new one from it.
	opMu sync.Mutex

	mu sync.Mutex
	// retired maps task ids that Retire lowered the count for to when, so
	// that none is counted twice. Ids ECS no longer lists are dropped.
	retired    map[string]time.Time
	lastLaunch time.Time
	seen       serviceCounts
	// errs holds each operation's last error until that operation succeeds
	// again, so a failing UpdateService is not hidden by working reads.
	errs target.OpErrors

	// With GuardTasks: guard maps task ids to their protection as this
	// target last set it (the zero time: released), listed the ids of the
	// last listing's tasks that are not stopping, and guardMu serializes
	// Protect.
	guard   bool
	guardMu sync.Mutex
	guarded map[string]time.Time
	listed  map[string]target.State
}

type serviceCounts struct {
	at                        time.Time
	desired, running, pending int32
}

var (
	_ target.Target  = (*Target)(nil)
	_ target.Retirer = (*Target)(nil)
	_ target.Guard   = (*Target)(nil)
)

// Guarding reports whether the control plane holds the tasks' protection
// (Config.GuardTasks).
func (t *Target) Guarding() bool { return t.guard }

// New checks cfg and builds the ECS client; it makes no AWS call.
func New(ctx context.Context, cfg Config) (*Target, error) {
	if err := check(&cfg); err != nil {
		return nil, err
	}
	maxAttempts := cmpOr(cfg.MaxAttempts, MaxAttemptsDefault)
	maxBackoff := cmpOr(cfg.MaxBackoff, MaxBackoffDefault)
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = maxAttempts
				o.MaxBackoff = maxBackoff
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("ecs: loading the AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("ecs: no region for service %q: set the pool's ecs.region or AWS_REGION", cfg.Service)
	}
	client := ecs.NewFromConfig(awsCfg, func(o *ecs.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Target{
		client:      client,
		cluster:     cfg.Cluster,
		service:     cfg.Service,
		region:      awsCfg.Region,
		callTimeout: cmpOr(cfg.CallTimeout, CallTimeoutDefault),
		logger:      logger.With("target", "ecs", "cluster", cfg.Cluster, "service", cfg.Service),
		now:         time.Now,
		retired:     map[string]time.Time{},
		guard:       cfg.GuardTasks,
		guarded:     map[string]time.Time{},
		listed:      map[string]target.State{},
	}, nil
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// check rejects what no AWS call could fix, so the server refuses to start
// rather than failing every reconcile.
func check(cfg *Config) error {
	var probs []string
	for _, f := range []struct{ name, v string }{{"cluster", cfg.Cluster}, {"service", cfg.Service}} {
		switch {
		case f.v == "":
			probs = append(probs, f.name+" is required (a name or an ARN)")
		case strings.ContainsFunc(f.v, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			probs = append(probs, fmt.Sprintf("%s %q contains spaces or control characters", f.name, f.v))
		}
	}
	if strings.HasPrefix(cfg.Service, "arn:") {
		probs = append(probs, checkServiceARN(cfg)...)
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			probs = append(probs, fmt.Sprintf("endpoint %q is not an http(s) URL (e.g. https://ecs.eu-west-1.amazonaws.com)", cfg.Endpoint))
		}
	}
	if cfg.CallTimeout < 0 || cfg.MaxAttempts < 0 || cfg.MaxBackoff < 0 {
		probs = append(probs, "call timeout, max attempts and max backoff cannot be negative")
	}
	if len(probs) > 0 {
		return fmt.Errorf("ecs: %s", strings.Join(probs, "; "))
	}
	return nil
}

// checkServiceARN catches a service ARN that contradicts the cluster or the
// region, which ECS would report only as a service that does not exist.
func checkServiceARN(cfg *Config) []string {
	a, err := arn.Parse(cfg.Service)
	if err != nil || a.Service != "ecs" || !strings.HasPrefix(a.Resource, "service/") {
		return []string{fmt.Sprintf("service %q is not an ECS service ARN (arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME)", cfg.Service)}
	}
	var probs []string
	if cfg.Region != "" && a.Region != cfg.Region {
		probs = append(probs, fmt.Sprintf("service ARN is in region %s, not %s", a.Region, cfg.Region))
	}
	// service/CLUSTER/NAME; the older service/NAME names no cluster.
	parts := strings.Split(a.Resource, "/")
	if len(parts) == 3 && cfg.Cluster != "" && parts[1] != clusterName(cfg.Cluster) {
		probs = append(probs, fmt.Sprintf("service ARN is in cluster %s, not %s", parts[1], clusterName(cfg.Cluster)))
	}
	return probs
}

func clusterName(cluster string) string {
	if a, err := arn.Parse(cluster); err == nil {
		return strings.TrimPrefix(a.Resource, "cluster/")
	}
	return cluster
}

// Name is the target kind.
func (*Target) Name() string { return "ecs" }

// Launch raises the service's desired count by n. ECS names the tasks, so
// it returns no ids; Instances reports the tasks not placed yet as
// placeholders.
func (t *Target) Launch(ctx context.Context, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	t.opMu.Lock()
	defer t.opMu.Unlock()
	svc, err := t.describeService(ctx)
	if err != nil {
		return nil, err
	}
	// Retired tasks ECS still runs (the last listing pruned the others) are
	// drained and take no work, but a raised count would keep them first:
	// raising by n alone let them absorb the raise, start nothing, and be
	// retired again a pass later, in a loop. So the count covers them too,
	// and they are forgotten, so the control plane retires them again and
	// ECS stops them once the new tasks run.
	t.mu.Lock()
	keep := len(t.retired)
	t.mu.Unlock()
	from := svc.DesiredCount
	to := int32(min(int64(from)+int64(n)+int64(keep), math.MaxInt32))
	if err := t.setDesired(ctx, to); err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.lastLaunch = t.now()
	clear(t.retired)
	t.mu.Unlock()
	t.logger.Info("raised the desired count", "from", from, "to", to)
	return nil, nil
}

// Instances lists the service's tasks, then one StateStarting placeholder
// (ecs-pending-1, …) for each task the desired count asks for beyond them.
// A task that was retired and that ECS has not stopped yet is reported as
// StateStopping.
func (t *Target) Instances(ctx context.Context) ([]target.Instance, error) {
	svc, err := t.describeService(ctx)
	if err != nil {
		return nil, err
	}
	tasks, err := t.listTasks(ctx, svc)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(svc, tasks)
	t.setListed(tasks)
	out := make([]target.Instance, 0, len(tasks))
	counted := 0 // tasks that fill the desired count
	for _, tk := range tasks {
		in := target.Instance{ID: taskID(aws.ToString(tk.TaskArn)), State: taskState(tk)}
		if tk.StartedAt != nil {
			in.StartedAt = *tk.StartedAt
		} else if tk.CreatedAt != nil {
			in.StartedAt = *tk.CreatedAt
		}
		if _, ok := t.retired[in.ID]; ok && in.State != target.StateStopping {
			in.State = target.StateStopping
		}
		if in.State != target.StateStopping {
			counted++
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b target.Instance) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for i := range int(svc.DesiredCount) - counted {
		out = append(out, target.Instance{ID: fmt.Sprintf("%s%d", pendingPrefix, i+1), State: target.StateStarting, StartedAt: t.lastLaunch})
	}
	return out, nil
}

// prune drops retired ids that ECS no longer lists, and those whose
// retirement ECS did not act on (see retireGrace). It compares tasks with
// the previous listing, so it runs before setListed. It returns the ids of
// the tasks that are not stopping. It needs t.mu.
func (t *Target) prune(svc *types.Service, tasks []types.Task) (live map[string]bool) {
	listed := map[string]bool{}
	live = map[string]bool{}
	for _, tk := range tasks {
		id := taskID(aws.ToString(tk.TaskArn))
		listed[id] = true
		if taskState(tk) != target.StateStopping {
			live[id] = true
		}
	}
	// Counted before the retired ids ECS stopped are dropped below, which
	// would make them look never retired.
	gone := 0
	for id := range t.listed {
		if _, retired := t.retired[id]; !retired && !live[id] {
			gone++
		}
	}
	excess := max(0, len(live)-int(svc.DesiredCount))
	now := t.now()
	for id, at := range t.retired {
		switch {
		case !listed[id]:
			delete(t.retired, id)
		case excess == 0 && now.Sub(at) >= retireGrace:
			delete(t.retired, id)
			t.logger.Info("ECS kept a retired task running; it can be retired again", "task", id)
		}
	}
	// A task that was running at the last listing, was never retired, and
	// is now stopping or gone spent one of the lowered counts if it was
	// ECS's pick (a drained worker drops its own protection, so ECS may stop
	// it in place of one that was retired), or it crashed and left its slot
	// to a retired one. Either way, retired tasks beyond the excess will not
	// be stopped: forget as many of them, up to one per such task, at once
	// rather than after the grace, so that the control plane retires them
	// again on its next pass. A read that predates the lowering is what the
	// grace waits out; only a crash during that read could still fool this,
	// and then one lowering too many goes to an unprotected task (a drained
	// or a starting one), which the next pass launches again if needed.
	var kept []string // retired, and ECS has not begun to stop them
	for id := range t.retired {
		if live[id] {
			kept = append(kept, id)
		}
	}
	if over := min(gone, len(kept)-excess); over > 0 {
		// Which ones does not matter: all are drained and unprotected, so
		// ECS may stop any of them for the excess. Sorted for a stable log.
		slices.Sort(kept)
		for _, id := range kept[:over] {
			delete(t.retired, id)
			t.logger.Info("ECS stopped another task in place of a retired one; it can be retired again", "task", id)
		}
	}
	return live
}

// Protect does nothing unless GuardTasks is set: each ebb worker on ECS
// holds its own task's scale-in protection through the ECS agent until it
// is drained, which is both more precise than the control plane's view of
// who is busy and free of AWS calls from here.
//
// With GuardTasks, keep are the tasks ECS must not stop (every task whose
// worker is not drained): each gets protection for guardMinutes, renewed
// once half of it has passed, and every other running task of the last
// listing is released. Only changes are sent, ten tasks a call.
func (t *Target) Protect(ctx context.Context, keep []string) error {
	if !t.guard {
		return nil
	}
	t.guardMu.Lock()
	defer t.guardMu.Unlock()
	now := t.now()
	want := map[string]bool{}
	t.mu.Lock()
	var enable, release []string
	for _, id := range keep {
		// Only a running task can be protected; a starting one is
		// protected by the pass that sees it run.
		if t.listed[id] != target.StateRunning || want[id] {
			continue
		}
		want[id] = true
		if until, ok := t.guarded[id]; !ok || until.Sub(now) < guardMinutes*time.Minute/2 {
			enable = append(enable, id)
		}
	}
	for id := range t.listed {
		if until, ok := t.guarded[id]; !want[id] && (!ok || !until.IsZero()) {
			release = append(release, id)
		}
	}
	for id := range t.guarded {
		if _, ok := t.listed[id]; !ok {
			delete(t.guarded, id)
		}
	}
	t.mu.Unlock()
	slices.Sort(enable)
	slices.Sort(release)
	var errs []error
	for _, step := range []struct {
		ids []string
		on  bool
	}{{release, false}, {enable, true}} {
		for batch := range slices.Chunk(step.ids, protectBatch) {
			if err := t.setProtection(ctx, batch, step.on, now); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// guardMinutes is the protection Protect asks for with GuardTasks: long
// enough that a control plane that is restarting does not let it lapse,
// short enough that tasks do not stay protected long after it is gone.
const guardMinutes = 10

// protectBatch is UpdateTaskProtection's limit of tasks per call.
const protectBatch = 10

func (t *Target) setProtection(ctx context.Context, ids []string, on bool, now time.Time) error {
	in := &ecs.UpdateTaskProtectionInput{Cluster: aws.String(t.cluster), Tasks: ids, ProtectionEnabled: on}
	if on {
		in.ExpiresInMinutes = aws.Int32(guardMinutes)
	}
	out, err := call(t, ctx, "UpdateTaskProtection", func(ctx context.Context) (*ecs.UpdateTaskProtectionOutput, error) {
		return t.client.UpdateTaskProtection(ctx, in)
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range out.ProtectedTasks {
		id := taskID(aws.ToString(p.TaskArn))
		switch {
		case !p.ProtectionEnabled:
			t.guarded[id] = time.Time{}
		case p.ExpirationDate != nil:
			t.guarded[id] = *p.ExpirationDate
		default:
			t.guarded[id] = now.Add(guardMinutes * time.Minute)
		}
	}
	var failed []string
	for _, f := range out.Failures {
		id := taskID(aws.ToString(f.Arn))
		delete(t.guarded, id)
		failed = append(failed, id+": "+aws.ToString(f.Reason))
	}
	if len(failed) > 0 && on {
		// A stopped or unknown task needs no protection; anything else
		// left a task ECS might stop, and Retire waits for it.
		t.logger.Info("UpdateTaskProtection failed for some tasks", "failures", strings.Join(failed, ","))
	}
	return nil
}

// setListed records the tasks of a listing that are not stopping, for
// Protect and Retire with GuardTasks. t.mu held.
func (t *Target) setListed(tasks []types.Task) {
	clear(t.listed)
	for _, tk := range tasks {
		if st := taskState(tk); st != target.StateStopping {
			t.listed[taskID(aws.ToString(tk.TaskArn))] = st
		}
	}
}

// unguarded names a task that ECS might pick instead of a retired one:
// running or starting, not among ids, and not protected by Protect. t.mu
// held.
func (t *Target) unguarded(ids []string) string {
	now := t.now()
	for id := range t.listed {
		if slices.Contains(ids, id) {
			continue
		}
		if _, retired := t.retired[id]; retired {
			continue
		}
		if until, ok := t.guarded[id]; !ok || !until.After(now) {
			return id
		}
	}
	return ""
}

// Retire lowers the desired count by one for each id that is a task of the
// service, not stopping, and not retired before; one UpdateService covers
// them all, and the count never goes below zero. Ids that are not listed —
// already stopped, or not task ids at all — are ignored, so that a worker
// whose registry entry outlives its task cannot lower the count twice.
func (t *Target) Retire(ctx context.Context, ids []string) error {
	t.opMu.Lock()
	defer t.opMu.Unlock()
	t.mu.Lock()
	var fresh []string
	for _, id := range ids {
		if _, done := t.retired[id]; !done && !slices.Contains(fresh, id) && !strings.HasPrefix(id, pendingPrefix) {
			fresh = append(fresh, id)
		}
	}
	t.mu.Unlock()
	if len(fresh) == 0 {
		return nil
	}
	svc, err := t.describeService(ctx)
	if err != nil {
		return err
	}
	tasks, err := t.listTasks(ctx, svc)
	if err != nil {
		return err
	}
	t.mu.Lock()
	live := t.prune(svc, tasks)
	t.setListed(tasks)
	t.mu.Unlock()
	var take, ignored []string
	for _, id := range fresh {
		if live[id] {
			take = append(take, id)
		} else {
			ignored = append(ignored, id)
		}
	}
	if len(ignored) > 0 {
		t.logger.Warn("not retiring ids that are no running task of the service", "ids", strings.Join(ignored, ","))
	}
	if len(take) == 0 {
		return nil
	}
	if t.guard {
		t.mu.Lock()
		other := t.unguarded(take)
		pending := int(svc.DesiredCount) > len(live)
		t.mu.Unlock()
		if other != "" || pending {
			// Not yet: the next pass protects what is running by then.
			t.logger.Debug("not retiring while a task ECS might stop instead is unprotected or not placed",
				"task", other, "desired", svc.DesiredCount, "live", len(live))
			return nil
		}
	}
	from := svc.DesiredCount
	to := max(0, from-int32(len(take)))
	if to != from {
		if err := t.setDesired(ctx, to); err != nil {
			return err
		}
		t.logger.Info("lowered the desired count for drained tasks", "from", from, "to", to, "tasks", strings.Join(take, ","))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, id := range take {
		t.retired[id] = now
	}
	return nil
}

// Shutdown leaves the service as it is. The tasks belong to ECS, not to this
// server: another control-plane replica takes the pool over, and lowering
// the count or stopping tasks here would interrupt work that no drain asked
// for.
func (*Target) Shutdown(context.Context) error { return nil }

// Status is one line for the pool view: the last error that has not been
// cleared by a later success of the same operation, then the service's
// counts as last seen.
func (t *Target) Status() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	if e, ok := t.errs.Last(); ok {
		b.WriteString(e.String() + "; ")
	}
	fmt.Fprintf(&b, "service %s in cluster %s (%s)", t.service, t.cluster, t.region)
	if s := t.seen; !s.at.IsZero() {
		fmt.Fprintf(&b, ": desired %d, running %d, pending %d, retired %d (at %s)",
			s.desired, s.running, s.pending, len(t.retired), s.at.UTC().Format(time.RFC3339))
	} else {
		b.WriteString(": not read yet")
	}
	return b.String()
}

// LastError is the most recent error of an ECS operation that has not
// succeeded since, or nil. It matches ErrServiceNotFound when the service
// is missing, and smithy.APIError for other API errors.
func (t *Target) LastError() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, _ := t.errs.Last()
	return e.Err
}

// describeService reads the service, failing with ErrServiceNotFound
// unless it is ACTIVE.
func (t *Target) describeService(ctx context.Context) (*types.Service, error) {
	const op = "DescribeServices"
	out, err := call(t, ctx, op, func(ctx context.Context) (*ecs.DescribeServicesOutput, error) {
		return t.client.DescribeServices(ctx, &ecs.DescribeServicesInput{
			Cluster:  aws.String(t.cluster),
			Services: []string{t.service},
		})
	})
	if err != nil {
		return nil, err
	}
	var svc *types.Service
	if len(out.Services) > 0 {
		svc = &out.Services[0]
	}
	var why string
	if svc == nil {
		why = fmt.Sprintf("service %s does not exist in cluster %s (region %s)", t.service, t.cluster, t.region)
		for _, f := range out.Failures {
			if r := aws.ToString(f.Reason); r != "" && r != "MISSING" {
				why += fmt.Sprintf(" (%s %s)", r, aws.ToString(f.Detail))
			}
		}
	} else if status := aws.ToString(svc.Status); status != "ACTIVE" {
		// INACTIVE: deleted; DRAINING: being deleted. Neither takes a count.
		why = fmt.Sprintf("service %s in cluster %s (region %s) is %s, not ACTIVE", t.service, t.cluster, t.region, status)
	}
	if why != "" {
		err := fmt.Errorf("ecs: %s: %w: %s; %s", op, ErrServiceNotFound, why, fixHint)
		t.recordErr(op, err)
		return nil, err
	}
	t.mu.Lock()
	t.seen = serviceCounts{at: t.now(), desired: svc.DesiredCount, running: svc.RunningCount,
		pending: svc.PendingCount}
	t.mu.Unlock()
	return svc, nil
}

const fixHint = "create it (its task definition runs `ebb worker`; a desired count of 0 is fine) " +
	"or correct the pool's ecs.cluster, ecs.service and ecs.region"

// listTasks returns the service's tasks that ECS means to keep running,
// described. A task that stops between the listing and the description is
// left out.
func (t *Target) listTasks(ctx context.Context, svc *types.Service) ([]types.Task, error) {
	// ListTasks filters by service name only, not by ARN.
	name := aws.ToString(svc.ServiceName)
	if name == "" {
		name = taskID(t.service)
	}
	var arns []string
	in := &ecs.ListTasksInput{
		Cluster:       aws.String(t.cluster),
		ServiceName:   aws.String(name),
		DesiredStatus: types.DesiredStatusRunning,
		MaxResults:    aws.Int32(100),
	}
	for {
		out, err := call(t, ctx, "ListTasks", func(ctx context.Context) (*ecs.ListTasksOutput, error) {
			return t.client.ListTasks(ctx, in)
		})
		if err != nil {
			return nil, err
		}
		arns = append(arns, out.TaskArns...)
		if aws.ToString(out.NextToken) == "" {
			break
		}
		next := *in
		next.NextToken = out.NextToken
		in = &next
	}
	tasks := make([]types.Task, 0, len(arns))
	for batch := range slices.Chunk(arns, describeBatch) {
		out, err := call(t, ctx, "DescribeTasks", func(ctx context.Context) (*ecs.DescribeTasksOutput, error) {
			return t.client.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(t.cluster), Tasks: batch})
		})
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, out.Tasks...)
	}
	return tasks, nil
}

func (t *Target) setDesired(ctx context.Context, n int32) error {
	out, err := call(t, ctx, "UpdateService", func(ctx context.Context) (*ecs.UpdateServiceOutput, error) {
		return t.client.UpdateService(ctx, &ecs.UpdateServiceInput{
			Cluster:      aws.String(t.cluster),
			Service:      aws.String(t.service),
			DesiredCount: aws.Int32(n),
		})
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen.at, t.seen.desired = t.now(), n
	if out.Service != nil {
		t.seen.running, t.seen.pending = out.Service.RunningCount, out.Service.PendingCount
	}
	return nil
}

// call runs one ECS operation within the call timeout, wraps its error with
// the operation and the service, and records it for Status.
func call[T any](t *Target, ctx context.Context, op string, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, t.callTimeout)
	defer cancel()
	out, err := f(cctx)
	if err == nil {
		t.mu.Lock()
		t.errs.Clear(op)
		t.mu.Unlock()
		return out, nil
	}
	err = t.wrap(op, err)
	// The caller giving up says nothing about ECS.
	if ctx.Err() == nil {
		t.recordErr(op, err)
	}
	return out, err
}

func (t *Target) recordErr(op string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.errs.Fail(op, t.now(), err)
}

func (t *Target) wrap(op string, err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ServiceNotFoundException", "ServiceNotActiveException":
			return fmt.Errorf("ecs: %s: %w: service %s in cluster %s (region %s) does not exist or is not active; %s: %w",
				op, ErrServiceNotFound, t.service, t.cluster, t.region, fixHint, err)
		case "ClusterNotFoundException":
			return fmt.Errorf("ecs: %s: %w: cluster %s does not exist in region %s; %s: %w",
				op, ErrServiceNotFound, t.cluster, t.region, fixHint, err)
		}
	}
	return fmt.Errorf("ecs: %s of service %s in cluster %s: %w", op, t.service, t.cluster, err)
}

// taskID is the last segment of a task ARN
// (arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID), which is the worker id an
// ebb worker on ECS registers with.
func taskID(arn string) string {
	return arn[strings.LastIndexByte(arn, '/')+1:]
}

func taskState(tk types.Task) target.State {
	if aws.ToString(tk.DesiredStatus) == statusStopped {
		return target.StateStopping
	}
	switch aws.ToString(tk.LastStatus) {
	case statusRunning:
		return target.StateRunning
	case "DEACTIVATING", "STOPPING", "DEPROVISIONING", statusStopped, "DELETED":
		return target.StateStopping
	default:
		// PROVISIONING, PENDING, ACTIVATING, and any status ECS adds later:
		// counting it as starting keeps the control plane from launching a
		// second task for it.
		return target.StateStarting
	}
}
