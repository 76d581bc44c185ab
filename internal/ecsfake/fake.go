package ecsfake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Defaults of Config and ServiceConfig.
const (
	DefaultRegion    = "us-east-1"
	DefaultAccountID = "123456789012"
	DefaultCluster   = "default"
	// DefaultInterval is the scheduler's pass interval.
	DefaultInterval = 50 * time.Millisecond
	// DefaultStopTimeout is ECS's default stopTimeout.
	DefaultStopTimeout = 30 * time.Second
	// DefaultStoppedTasksKept bounds the stopped tasks remembered per service.
	DefaultStoppedTasksKept = 1000
)

// Protection bounds, as ECS has them.
const (
	DefaultProtectionMinutes = 120
	MaxProtectionMinutes     = 2880
)

// Operation names for Calls, ThrottledCalls and SetThrottle: the control
// plane's are the X-Amz-Target operation names.
const (
	OpDescribeServices     = "DescribeServices"
	OpUpdateService        = "UpdateService"
	OpListTasks            = "ListTasks"
	OpDescribeTasks        = "DescribeTasks"
	OpGetTaskProtection    = "GetTaskProtection"
	OpUpdateTaskProtection = "UpdateTaskProtection"

	// AllOps, given to SetThrottle, sets the throttling of every control-
	// plane operation that has no setting of its own.
	AllOps = "*"

	// The task-facing endpoints, counted by Calls (never throttled).
	OpAgentGetProtection = "Agent.GetTaskProtection"
	OpAgentPutProtection = "Agent.UpdateTaskProtection"
	OpMetadataTask       = "Metadata.Task"
	OpMetadataContainer  = "Metadata.Container"
)

// Task statuses, as ECS spells them.
const (
	StatusProvisioning = "PROVISIONING"
	StatusPending      = "PENDING"
	StatusRunning      = "RUNNING"
	StatusStopping     = "STOPPING"
	StatusStopped      = "STOPPED"
)

// StopReason says why a task stopped.
type StopReason string

const (
	// StopScaleIn: the scheduler stopped it because the service had more
	// tasks than its desired count.
	StopScaleIn StopReason = "scale-in"
	// StopExited: its process exited by itself.
	StopExited StopReason = "exited"
	// StopFailedToStart: its process could not be started.
	StopFailedToStart StopReason = "failed-to-start"
	// StopShutdown: Close stopped it.
	StopShutdown StopReason = "shutdown"
)

// Config configures a Fake.
type Config struct {
	// Services are the ECS services the fake runs. At least one; names
	// are unique across the fake (methods name a service by its name).
	Services []ServiceConfig

	// Region and AccountID appear in ARNs; Region is also the SigV4 scope
	// requests must be signed for. DefaultRegion and DefaultAccountID when
	// empty.
	Region    string
	AccountID string

	// Interval is the scheduler's pass interval; DefaultInterval when zero.
	Interval time.Duration

	// ProtectionMinute is how long one minute of expiresInMinutes lasts;
	// time.Minute when zero. Tests shorten it to see protection expire.
	ProtectionMinute time.Duration

	// BusyAtStop, when set, tells whether the task's worker holds a task:
	// it is called right before a scale-in SIGTERM and right after a task's
	// process exited by itself, never with the fake's lock held, and its
	// answer goes into the Event. It may be called until Close returns.
	// SetBusyAtStop replaces it.
	BusyAtStop func(taskID string) bool

	// Seed seeds the choice of scale-in victims and of throttled calls; 0
	// picks a random seed.
	Seed uint64

	// StoppedTasksKept bounds the stopped tasks remembered per service;
	// DefaultStoppedTasksKept when zero.
	StoppedTasksKept int

	// Logf, when set, gets a line for each scheduler action (start, stop,
	// kill, exit). It may be called until Close returns.
	Logf func(format string, args ...any)
}

// ServiceConfig is one ECS service and its task definition.
type ServiceConfig struct {
	// Cluster is the cluster's short name; DefaultCluster when empty.
	Cluster string
	// Name is the service name. Required.
	Name string
	// Family is the task definition family; Name when empty. The task
	// definition is <Family>:1, and its one container is named Family.
	Family string

	// Command is the task's process (argv). Required. Command[0] is found
	// as exec.Command finds it.
	Command []string
	// Env is added to the test process's environment (KEY=VALUE, later
	// entries win); ECS_CONTAINER_METADATA_URI_V4, ECS_AGENT_URI and
	// AWS_EXECUTION_ENV are set after it, and inherited AWS_* and ECS_*
	// variables are dropped. (A Go binary built with -race sleeps a second
	// at exit unless Env has GORACE=atexit_sleep_ms=0.)
	Env []string
	// LogDir, when set, receives each task's stdout and stderr in
	// LogDir/<task id>.log (created if need be). Empty: discarded.
	LogDir string

	// StopTimeout is ECS's stopTimeout: SIGKILL follows SIGTERM after it.
	// DefaultStopTimeout when zero.
	StopTimeout time.Duration
	// TermLeaderOnly sends a stop's SIGTERM to the task's process alone,
	// as ECS does to a container's main process, instead of its whole
	// process group; SIGKILL after StopTimeout still reaches the group. A
	// Celery worker needs it: its pool processes die on SIGTERM, and the
	// main process's warm shutdown is what lets them finish.
	TermLeaderOnly bool
	// StartDelay keeps a new task PROVISIONING this long before its process
	// starts. Zero starts it on the pass that created it.
	StartDelay time.Duration

	// DesiredCount is the service's desired count at start.
	DesiredCount int
}

// Task is a snapshot of one task.
type Task struct {
	ID, ARN          string
	Cluster, Service string

	LastStatus    string
	DesiredStatus string

	// Protected: scale-in protection is enabled and not expired.
	Protected bool
	// ProtectionExpiresAt is when the protection expires (zero when not
	// protected).
	ProtectionExpiresAt time.Time

	// PID of its process (0 before it started).
	PID int

	CreatedAt, StartedAt, StoppingAt, StoppedAt time.Time
	StopCode, StoppedReason                     string
	// ExitCode once the process has exited (-1 when a signal ended it).
	ExitCode *int
}

// Active reports whether the task is wanted running (desiredStatus RUNNING):
// what counts towards the desired count.
func (t Task) Active() bool { return t.DesiredStatus == StatusRunning }

// Event records one task stop.
type Event struct {
	// Time the stop happened: the SIGTERM for a scale-in or shutdown, the
	// exit for a task that exited by itself.
	Time    time.Time
	Cluster string
	Service string
	TaskID  string
	TaskARN string
	Reason  StopReason

	// Protected: scale-in protection was in force at that moment (never
	// for a scale-in victim, by construction).
	Protected bool
	// ProtectionIgnored: a request enabling protection for this task was
	// accepted and ignored (SetIgnoreProtection).
	ProtectionIgnored bool
	// Busy is Config.BusyAtStop's answer, BusyKnown whether it was asked
	// (scale-in and exited only, with a hook set).
	Busy, BusyKnown bool

	// Filled in once the process has exited (zero until then).
	ExitedAt time.Time
	// ExitCode of the process, -1 when a signal ended it.
	ExitCode int
	// ExitStatus as os.ProcessState words it ("exit status 0",
	// "signal: killed").
	ExitStatus string
	// Killed: SIGKILL was needed because the process outlived StopTimeout.
	Killed bool
}

// Throttle says which calls of an operation are answered with
// ThrottlingException. The three combine: the next Next calls are
// throttled; after them, every Every-th call is (counting the calls after
// those Next); any other call is with probability Fraction.
type Throttle struct {
	Next     int
	Every    int
	Fraction float64
}

// AgentFaultMode is how a failing agent protection PUT answers.
type AgentFaultMode int

const (
	// AgentHTTP500: HTTP 500 {"error":{"Arn":…,"Code":"ServerException",…}}.
	AgentHTTP500 AgentFaultMode = iota + 1
	// AgentThrottled: HTTP 400 {"error":{"Arn":…,"Code":"ThrottlingException",
	// "Message":"Rate exceeded"},"requestID":…}, as the agent relays an ECS
	// throttle.
	AgentThrottled
)

// AgentFault makes agent protection PUTs (PUT
// $ECS_AGENT_URI/task-protection/v1/state) fail: the next Next ones, or
// every one while Always is set. GETs are not affected.
type AgentFault struct {
	Mode   AgentFaultMode
	Next   int
	Always bool
}

// Fake is a running fake ECS: its server and its scheduler.
type Fake struct {
	cfg Config
	srv *httptest.Server

	mu               sync.Mutex
	services         map[string]*service // by name
	serviceOrder     []*service
	tasks            map[string]*task // by id
	events           []Event
	calls, throttled map[string]int
	throttles        map[string]*throttleState
	agentFault       AgentFault
	ignoreProtection bool
	busyAtStop       func(string) bool
	rng              *mrand.Rand
	seq              int64
	passes           int
	changed          chan struct{}

	wake      chan struct{}
	quit      chan struct{}
	loopDone  chan struct{}
	wg        sync.WaitGroup // task reapers and kill timers
	closeOnce sync.Once
}

type service struct {
	cfg          ServiceConfig
	arn          string
	clusterArn   string
	taskDefArn   string
	deploymentID string
	createdAt    time.Time
	updatedAt    time.Time
	desired      int
	failedTasks  int
	waiting      int     // excess tasks spared for their protection, last pass
	tasks        []*task // creation order, stopped ones included while kept
}

type task struct {
	svc     *service
	id, arn string
	seq     int64
	version int64

	lastStatus, desiredStatus                   string
	createdAt, startedAt, stoppingAt, stoppedAt time.Time
	stopCode, stoppedReason                     string
	exitCode                                    *int

	protected         bool
	protectedUntil    time.Time
	protectionIgnored bool

	// The process: pid is set once started; reaped once the reaper is about
	// to reap it, after which its process group must not be signalled.
	pid    int
	reaped bool
	killed bool
	done   chan struct{} // closed once reaped
	event  int           // index of its stop event in Fake.events, -1 before
	exit   *exitInfo
}

type exitInfo struct {
	at     time.Time
	code   int
	status string
}

type throttleState struct {
	Throttle
	count int
}

// New validates cfg, starts the server on 127.0.0.1 and the scheduler. The
// caller must Close the Fake.
func New(cfg Config) (*Fake, error) {
	if !supported {
		return nil, errors.New("ecsfake: needs a Unix system")
	}
	if len(cfg.Services) == 0 {
		return nil, errors.New("ecsfake: no services")
	}
	cfg.Region = cmpOr(cfg.Region, DefaultRegion)
	cfg.AccountID = cmpOr(cfg.AccountID, DefaultAccountID)
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ProtectionMinute <= 0 {
		cfg.ProtectionMinute = time.Minute
	}
	if cfg.StoppedTasksKept <= 0 {
		cfg.StoppedTasksKept = DefaultStoppedTasksKept
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	now := time.Now()
	f := &Fake{
		cfg:        cfg,
		services:   map[string]*service{},
		tasks:      map[string]*task{},
		calls:      map[string]int{},
		throttled:  map[string]int{},
		throttles:  map[string]*throttleState{},
		busyAtStop: cfg.BusyAtStop,
		rng:        mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		changed:    make(chan struct{}),
		wake:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
		loopDone:   make(chan struct{}),
	}
	for i, sc := range cfg.Services {
		sc.Cluster = cmpOr(sc.Cluster, DefaultCluster)
		sc.Family = cmpOr(sc.Family, sc.Name)
		switch {
		case sc.Name == "":
			return nil, fmt.Errorf("ecsfake: service %d has no name", i)
		case f.services[sc.Name] != nil:
			return nil, fmt.Errorf("ecsfake: service %q configured twice", sc.Name)
		case len(sc.Command) == 0:
			return nil, fmt.Errorf("ecsfake: service %q has no command", sc.Name)
		case sc.DesiredCount < 0:
			return nil, fmt.Errorf("ecsfake: service %q: negative desired count", sc.Name)
		}
		if sc.StopTimeout <= 0 {
			sc.StopTimeout = DefaultStopTimeout
		}
		sc.Command = slices.Clone(sc.Command)
		sc.Env = slices.Clone(sc.Env)
		s := &service{
			cfg:          sc,
			arn:          f.arn("service/" + sc.Cluster + "/" + sc.Name),
			clusterArn:   f.arn("cluster/" + sc.Cluster),
			taskDefArn:   f.arn("task-definition/" + sc.Family + ":1"),
			deploymentID: fmt.Sprintf("ecs-svc/%019d", f.rng.Int64N(1e18)),
			createdAt:    now,
			updatedAt:    now,
			desired:      sc.DesiredCount,
		}
		f.services[sc.Name] = s
		f.serviceOrder = append(f.serviceOrder, s)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", f.serveAPI)
	mux.HandleFunc("GET /v4/{id}", f.serveContainerMetadata)
	mux.HandleFunc("GET /v4/{id}/task", f.serveTaskMetadata)
	mux.HandleFunc("GET /api/{id}/task-protection/v1/state", f.serveAgentGet)
	mux.HandleFunc("PUT /api/{id}/task-protection/v1/state", f.serveAgentPut)
	f.srv = httptest.NewServer(mux)

	go f.loop()
	return f, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (f *Fake) arn(resource string) string {
	return "arn:aws:ecs:" + f.cfg.Region + ":" + f.cfg.AccountID + ":" + resource
}

// URL is the server's base URL (http://127.0.0.1:<port>): the control
// plane's endpoint (BaseEndpoint) and the root of the task endpoints.
func (f *Fake) URL() string { return f.srv.URL }

// Region is the region requests must be signed for.
func (f *Fake) Region() string { return f.cfg.Region }

// ClusterARN is the ARN of the named cluster.
func (f *Fake) ClusterARN(cluster string) string { return f.arn("cluster/" + cluster) }

// AWSConfig is an aws.Config for a client of the fake: its region, static
// credentials and BaseEndpoint. The SDK's default retryer applies; set
// Retryer or RetryMaxAttempts on the copy to change that.
func (f *Fake) AWSConfig() aws.Config {
	return aws.Config{
		Region:       f.cfg.Region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDECSFAKE", "ecsfake-secret", ""),
		BaseEndpoint: aws.String(f.srv.URL),
	}
}

// Close stops the scheduler, stops every task (SIGTERM to its process
// group, SIGKILL after its StopTimeout), waits for them and for the fake's
// goroutines, and closes the server. It returns nil; calling it again does
// nothing.
func (f *Fake) Close() error {
	f.closeOnce.Do(func() {
		close(f.quit)
		<-f.loopDone
		f.mu.Lock()
		now := time.Now()
		for _, s := range f.serviceOrder {
			for _, t := range s.tasks {
				if t.desiredStatus != StatusRunning {
					continue
				}
				protected := t.isProtected(now)
				f.beginStop(t, now, stopCodeUser, "ecsfake: Close")
				f.recordStop(t, now, StopShutdown, protected, false, false)
				f.signalStop(t)
			}
		}
		f.mu.Unlock()
		f.wg.Wait()
		f.srv.Close()
	})
	return nil
}

// DesiredCount is the service's desired count (0 for an unknown service).
func (f *Fake) DesiredCount(service string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.services[service]; s != nil {
		return s.desired
	}
	return 0
}

// SetDesiredCount sets the service's desired count as UpdateService does,
// without going through the API (no call counted, no fault applied).
func (f *Fake) SetDesiredCount(service string, n int) error {
	if n < 0 {
		return errors.New("ecsfake: negative desired count")
	}
	f.mu.Lock()
	s := f.services[service]
	if s != nil {
		s.desired = n
		s.updatedAt = time.Now()
		f.notify()
	}
	f.mu.Unlock()
	if s == nil {
		return fmt.Errorf("ecsfake: no service %q", service)
	}
	f.poke()
	return nil
}

// Tasks lists the service's tasks in creation order, stopped ones included
// (nil for an unknown service).
func (f *Fake) Tasks(service string) []Task {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.services[service]
	if s == nil {
		return nil
	}
	now := time.Now()
	out := make([]Task, 0, len(s.tasks))
	for _, t := range s.tasks {
		out = append(out, t.snapshot(now))
	}
	return out
}

// ActiveTasks lists the service's tasks whose desiredStatus is RUNNING.
func (f *Fake) ActiveTasks(service string) []Task {
	return slices.DeleteFunc(f.Tasks(service), func(t Task) bool { return !t.Active() })
}

// RunningCount is the number of the service's tasks that are RUNNING and
// wanted so (what DescribeServices reports as runningCount).
func (f *Fake) RunningCount(service string) int {
	n := 0
	for _, t := range f.Tasks(service) {
		if t.LastStatus == StatusRunning && t.Active() {
			n++
		}
	}
	return n
}

// Task returns one task by id.
func (f *Fake) Task(id string) (Task, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tasks[id]
	if t == nil {
		return Task{}, false
	}
	return t.snapshot(time.Now()), true
}

func (t *task) snapshot(now time.Time) Task {
	out := Task{
		ID: t.id, ARN: t.arn, Cluster: t.svc.cfg.Cluster, Service: t.svc.cfg.Name,
		LastStatus: t.lastStatus, DesiredStatus: t.desiredStatus,
		PID:       t.pid,
		CreatedAt: t.createdAt, StartedAt: t.startedAt, StoppingAt: t.stoppingAt, StoppedAt: t.stoppedAt,
		StopCode: t.stopCode, StoppedReason: t.stoppedReason,
	}
	if t.isProtected(now) {
		out.Protected = true
		out.ProtectionExpiresAt = t.protectedUntil
	}
	if t.exitCode != nil {
		c := *t.exitCode
		out.ExitCode = &c
	}
	return out
}

func (t *task) isProtected(now time.Time) bool {
	return t.protected && now.Before(t.protectedUntil)
}

// Events lists every stop so far, oldest first.
func (f *Fake) Events() []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// Calls is the number of requests received for op (an Op* constant),
// throttled ones included.
func (f *Fake) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// ThrottledCalls is the number of op's requests answered with an injected
// ThrottlingException.
func (f *Fake) ThrottledCalls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.throttled[op]
}

// Passes is the number of scheduler passes completed: a test that wants to
// see that nothing happens waits for a few more passes.
func (f *Fake) Passes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.passes
}

// Changed returns a channel that is closed at the next change of state: a
// task created, started, stopping or stopped, a protection set or expired, a
// desired count changed, an event recorded, a scheduler pass completed.
// Take the channel before checking the state it guards.
func (f *Fake) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Wait blocks until cond reports true (checked at once and after every
// change, without the fake's lock held) or ctx is done.
func (f *Fake) Wait(ctx context.Context, cond func() bool) error {
	for {
		ch := f.Changed()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// SetThrottle sets which calls of op (a control-plane Op* constant, or
// AllOps for every operation without a setting of its own) are throttled.
// The zero Throttle turns throttling off for op.
func (f *Fake) SetThrottle(op string, t Throttle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t == (Throttle{}) {
		delete(f.throttles, op)
		return
	}
	f.throttles[op] = &throttleState{Throttle: t}
}

// SetAgentFault sets how agent protection PUTs fail; the zero AgentFault
// makes them succeed again.
func (f *Fake) SetAgentFault(af AgentFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if af.Mode == 0 {
		af.Mode = AgentHTTP500
	}
	f.agentFault = af
}

// SetIgnoreProtection makes the agent and UpdateTaskProtection accept
// requests that enable protection and answer them as if applied, while
// changing nothing: the scheduler then stops busy tasks. Requests that
// disable protection still apply.
func (f *Fake) SetIgnoreProtection(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ignoreProtection = on
}

// SetBusyAtStop replaces Config.BusyAtStop.
func (f *Fake) SetBusyAtStop(fn func(taskID string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.busyAtStop = fn
}

// shouldThrottle decides whether this call of op is throttled. f.mu held.
func (f *Fake) shouldThrottle(op string) bool {
	st := f.throttles[op]
	if st == nil {
		st = f.throttles[AllOps]
	}
	if st == nil {
		return false
	}
	if st.Next > 0 {
		st.Next--
		return true
	}
	st.count++
	if st.Every > 0 && st.count%st.Every == 0 {
		return true
	}
	return st.Fraction > 0 && f.rng.Float64() < st.Fraction
}

// notify wakes everything waiting on Changed. f.mu held.
func (f *Fake) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// poke makes the scheduler run a pass now.
func (f *Fake) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *Fake) logf(format string, args ...any) {
	if f.cfg.Logf != nil {
		f.cfg.Logf("ecsfake: "+format, args...)
	}
}

func newTaskID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
