// Package local is the target that runs a pool's workers as processes on
// this machine.
//
// Each instance runs Config.Command with "--id", <instance id> appended, so
// the worker registers in the broker under the id the target reports. It runs
// in its own process group with stdout and stderr appended to
// LogDir/<instance id>.log. On Linux it also gets SIGTERM if the server dies
// (Pdeathsig), so an orphaned worker drains and exits rather than running
// unowned; elsewhere it runs on until drained through the broker.
//
// Because each worker leads its own process group, a Ctrl-C in the server's
// terminal reaches only the server, which is expected to drain the pool
// through the broker and then call Shutdown.
//
// Scale-in does not go through the target: the autoscaler asks an idle worker
// to drain through the broker and the worker exits by itself; the target
// reaps it. Only Shutdown signals workers.
package local

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ebbq/ebb/internal/target"
)

// Defaults of Config.
const (
	// LogDirDefault is relative to the server's working directory.
	LogDirDefault = "ebb-logs"
	// StopGraceDefault outlasts the worker's default drain timeout (25 s),
	// leaving it time to hand back what did not finish.
	StopGraceDefault = 30 * time.Second
	// CrashBackoffMinDefault and CrashBackoffMaxDefault bound the pause
	// between launches while workers crash: a typo in Command or an
	// unreachable broker costs one start per minute, not one per pass.
	CrashBackoffMinDefault = time.Second
	CrashBackoffMaxDefault = time.Minute
	// CrashWindowDefault: a worker that fails on its flags or its broker
	// does so within a second or two of starting.
	CrashWindowDefault = 10 * time.Second
)

// PoolMaxLen leaves room for the "-" and random suffix of instance ids within
// the 63 characters of a DNS label, so the same pool name works for
// Kubernetes.
const PoolMaxLen = 48

// Config configures a local Target.
type Config struct {
	// Pool names the pool and prefixes instance ids (and so log file
	// names). Required: 1–PoolMaxLen characters from [a-z0-9-], starting and
	// ending with a letter or digit.
	Pool string

	// Command is one worker's argv, for example {"ebb", "worker", "--broker",
	// url, "--pool", "mail", "--queues", "mail"}. The target appends "--id",
	// <instance id>, so Command must not set --id itself. Command[0] is found
	// as exec.Command finds it (PATH for a bare name, relative to Dir for a
	// relative path). It should be the worker itself or a script that execs
	// it: the parent-death signal reaches only the process the target
	// started. A command with IDPlaceholder in an argument gets the id
	// there instead of "--id". Required.
	Command []string

	// Env is added to os.Environ() as KEY=VALUE; later entries win.
	Env []string

	// Dir is the workers' working directory; "" is the server's.
	Dir string

	// LogDir receives each instance's stdout and stderr in <id>.log. It is
	// created if missing, and relative to the server's working directory,
	// not Dir. "" is LogDirDefault.
	LogDir string

	// StopGrace is how long Shutdown waits after SIGTERM before it SIGKILLs
	// what is left; zero is StopGraceDefault. Keep it a few seconds above
	// the workers' --drain-timeout so they can hand back unfinished tasks.
	StopGrace time.Duration

	// CrashBackoffMin and CrashBackoffMax bound the crash-loop backoff. It
	// doubles with each launch that crashes (instances launched together
	// count once) and resets once an instance launched since the last crash
	// outlives CrashWindow. Zero takes CrashBackoffMinDefault and
	// CrashBackoffMaxDefault.
	CrashBackoffMin, CrashBackoffMax time.Duration

	// CrashWindow: an instance that exits with a non-zero code, or is killed
	// by a signal the target did not send, within this long of starting has
	// crashed. An exit 0 never counts: workers exit 0 when the autoscaler
	// drains them, however young. Zero is CrashWindowDefault.
	CrashWindow time.Duration

	// TermLeaderOnly sends Shutdown's SIGTERM to the process the target
	// started rather than to its whole group (SIGKILL still goes to the
	// group): for workers whose children must not see it, such as Celery's
	// prefork pool processes, which die on SIGTERM mid-task while their
	// parent's warm shutdown would let them finish.
	TermLeaderOnly bool

	// Logger defaults to slog.Default(). The target adds target=local; the
	// pool is the caller's to add (instance ids carry it too).
	Logger *slog.Logger
}

// ErrShutdown is returned by Launch once Shutdown has been called.
var ErrShutdown = errors.New("local target: shut down")

// exitsKept bounds the exits held for Exits when nobody collects them.
const exitsKept = 128

// Target runs worker processes on this machine. It implements target.Target.
type Target struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time // the clock behind crash detection and backoff; tests replace it

	mu        sync.Mutex
	instances map[string]*instance
	exits     []Exit
	spawner   *spawner
	closed    bool          // Shutdown has begun; Launch refuses
	shutDown  chan struct{} // closed when the first Shutdown has finished

	// Crash loop: crashes counts backoff steps since the last instance that
	// outlived CrashWindow; launches wait until retryAt.
	crashes     int
	lastCrash   time.Time
	retryAt     time.Time
	lastFailure string
	loggedStep  int // the step whose refusal was logged

	wg sync.WaitGroup // reapers and spawners
}

type instance struct {
	id        string
	cmd       *exec.Cmd
	log       string
	startedAt time.Time
	state     target.State
	signalled bool // the target sent it a signal, so its exit is not a crash
	gone      bool // exited: its process group may no longer be its own
}

// Exit records how an instance ended.
type Exit struct {
	ID        string
	StartedAt time.Time
	RanFor    time.Duration
	// Code is the exit status, or -1 if a signal ended the process.
	Code int
	// Signal ended the process; 0 if it exited.
	Signal syscall.Signal
	// Stopped: Shutdown had signalled it.
	Stopped bool
	// Crashed: it counted toward crash-loop backoff.
	Crashed bool
	// Log is the instance's log file.
	Log string
}

var _ target.Target = (*Target)(nil)

// New checks config and returns a target with no instances. It creates
// LogDir at once, so a bad path shows at startup rather than at the first
// scale-up.
func New(config Config) (*Target, error) {
	c := config
	if !supported {
		return nil, errors.New("local target: workers are stopped with SIGTERM, which needs a Unix system")
	}
	if !validPool(c.Pool) {
		return nil, fmt.Errorf("local target: Config.Pool %q: use 1–%d characters from [a-z0-9-], starting and ending with a letter or digit", c.Pool, PoolMaxLen)
	}
	if len(c.Command) == 0 || c.Command[0] == "" {
		return nil, errors.New("local target: Config.Command is required (the argv of one worker, e.g. ebb worker --broker URL --pool NAME)")
	}
	for _, a := range c.Command[1:] {
		if a == "--id" || a == "-id" || strings.HasPrefix(a, "--id=") || strings.HasPrefix(a, "-id=") {
			return nil, fmt.Errorf("local target: Config.Command sets %q: leave it out, the target appends a unique --id per instance", a)
		}
	}
	for i, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("local target: Config.Env[%d] %q: want KEY=VALUE", i, kv)
		}
	}
	if c.Dir != "" {
		if fi, err := os.Stat(c.Dir); err != nil {
			return nil, fmt.Errorf("local target: Config.Dir: %w", err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("local target: Config.Dir %q is not a directory", c.Dir)
		}
	}
	if err := checkCommand(c.Command[0], c.Dir); err != nil {
		return nil, fmt.Errorf("local target: Config.Command[0]: %w", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"StopGrace", c.StopGrace}, {"CrashBackoffMin", c.CrashBackoffMin}, {"CrashBackoffMax", c.CrashBackoffMax}, {"CrashWindow", c.CrashWindow}} {
		if d.v < 0 {
			return nil, fmt.Errorf("local target: Config.%s %s is negative", d.name, d.v)
		}
	}
	c.LogDir = cmp.Or(c.LogDir, LogDirDefault)
	c.StopGrace = cmp.Or(c.StopGrace, StopGraceDefault)
	c.CrashBackoffMin = cmp.Or(c.CrashBackoffMin, CrashBackoffMinDefault)
	c.CrashBackoffMax = cmp.Or(c.CrashBackoffMax, CrashBackoffMaxDefault)
	c.CrashWindow = cmp.Or(c.CrashWindow, CrashWindowDefault)
	if c.CrashBackoffMax < c.CrashBackoffMin {
		return nil, fmt.Errorf("local target: Config.CrashBackoffMax %s is below CrashBackoffMin %s", c.CrashBackoffMax, c.CrashBackoffMin)
	}
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("local target: Config.LogDir: %w", err)
	}
	c.Command = slices.Clone(c.Command)
	c.Env = slices.Clone(c.Env)
	logger := cmp.Or(c.Logger, slog.Default())
	return &Target{
		cfg:       c,
		logger:    logger.With("target", "local"),
		now:       time.Now,
		instances: make(map[string]*instance),
		shutDown:  make(chan struct{}),
	}, nil
}

func validPool(s string) bool {
	if s == "" || len(s) > PoolMaxLen || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkCommand finds the executable as exec.Cmd will, so a typo fails New
// rather than every launch.
func checkCommand(name, dir string) error {
	if dir != "" && strings.ContainsRune(name, filepath.Separator) && !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	}
	_, err := exec.LookPath(name)
	return err
}

// Name returns "local".
func (t *Target) Name() string { return "local" }

// Launch starts up to n workers and returns their ids. While workers are
// crash-looping it starts none and returns no error; it logs why once per
// backoff step. If a process cannot be started (the working directory
// vanished, say) it returns the ids started before it together with the
// error, and the failure counts as a crash. After Shutdown it returns
// ErrShutdown.
func (t *Target) Launch(ctx context.Context, n int) ([]string, error) {
	// The lock is held across the batch so Shutdown sees every instance it
	// started; a start is a fork and exec, milliseconds.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrShutdown
	}
	now := t.now()
	t.endCrashLoopLocked(now)
	if n <= 0 {
		return nil, nil
	}
	if now.Before(t.retryAt) {
		if t.loggedStep != t.crashes {
			t.loggedStep = t.crashes
			t.logger.Warn("local target: workers are crash-looping; not launching until the backoff ends",
				"crashes", t.crashes, "retry_in", t.retryAt.Sub(now).Round(time.Millisecond), "last_failure", t.lastFailure)
		}
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(t.cfg.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("local target: log directory: %w", err)
	}
	if t.spawner == nil {
		t.spawner = newSpawner(&t.wg)
	}
	defer t.releaseSpawnerLocked()
	var ids []string
	for range n {
		if err := ctx.Err(); err != nil {
			return ids, err
		}
		inst, err := t.startLocked()
		if err != nil {
			now := t.now()
			t.crashLocked(now, now, err.Error())
			return ids, err
		}
		ids = append(ids, inst.id)
	}
	return ids, nil
}

func (t *Target) startLocked() (*instance, error) {
	id, logFile, err := t.newInstanceLog()
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	argv := instanceArgs(t.cfg.Command[1:], id)
	cmd := exec.Command(t.cfg.Command[0], argv...)
	cmd.Env = append(os.Environ(), t.cfg.Env...)
	cmd.Dir = t.cfg.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := t.spawner.start(cmd); err != nil {
		_ = os.Remove(logFile.Name())
		return nil, fmt.Errorf("local target: start worker %s: %w", id, err)
	}
	inst := &instance{id: id, cmd: cmd, log: logFile.Name(), startedAt: t.now(), state: target.StateRunning}
	t.instances[id] = inst
	t.wg.Add(1)
	go t.reap(inst)
	t.logger.Info("worker instance started", "id", id, "pid", cmd.Process.Pid, "log", inst.log)
	return inst, nil
}

// IDPlaceholder in Config.Command is replaced by the instance id, for
// workers that are not `ebb worker` and take their identity another way
// (Celery: --hostname {id}@%h). A command that has it gets no "--id".
const IDPlaceholder = "{id}"

func instanceArgs(args []string, id string) []string {
	out := slices.Clone(args)
	placed := false
	for i, a := range out {
		if strings.Contains(a, IDPlaceholder) {
			out[i], placed = strings.ReplaceAll(a, IDPlaceholder, id), true
		}
	}
	if !placed {
		out = append(out, "--id", id)
	}
	return out
}

// newInstanceLog picks an id and creates its log file. Creating the file
// exclusively makes the id unique among every instance whose log is still
// there, not only among the live ones.
func (t *Target) newInstanceLog() (string, *os.File, error) {
	var err error
	for range 5 {
		id := t.cfg.Pool + "-" + strings.ToLower(rand.Text()[:8])
		var f *os.File
		f, err = os.OpenFile(filepath.Join(t.cfg.LogDir, id+".log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
		if err == nil {
			return id, f, nil
		}
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	return "", nil, fmt.Errorf("local target: create instance log: %w", err)
}

// reap waits for the instance's process and records how it ended.
func (t *Target) reap(inst *instance) {
	defer t.wg.Done()
	if waitUntilExited(inst.cmd.Process.Pid) {
		t.mu.Lock()
		inst.gone = true
		t.mu.Unlock()
	}
	waitErr := inst.cmd.Wait()
	code, sig := -1, syscall.Signal(0)
	if ps := inst.cmd.ProcessState; ps != nil {
		code, sig = exitStatus(ps)
	}
	abnormal := code != 0 || sig != 0
	var lastOutput string
	if abnormal {
		lastOutput = lastLine(inst.log)
	}

	t.mu.Lock()
	now := t.now()
	inst.gone = true
	delete(t.instances, inst.id)
	ex := Exit{ID: inst.id, StartedAt: inst.startedAt, RanFor: now.Sub(inst.startedAt), Code: code, Signal: sig,
		Stopped: inst.signalled, Log: inst.log}
	ex.Crashed = abnormal && !ex.Stopped && ex.RanFor < t.cfg.CrashWindow
	if ex.Crashed {
		reason := fmt.Sprintf("%s exited with code %d", inst.id, code)
		if sig != 0 {
			reason = fmt.Sprintf("%s was killed by %v", inst.id, sig)
		}
		if lastOutput != "" {
			reason += ": " + lastOutput
		}
		t.crashLocked(inst.startedAt, now, reason)
	} else if ex.RanFor >= t.cfg.CrashWindow {
		t.endCrashLoopIfLocked(inst.startedAt)
	}
	t.exits = append(t.exits, ex)
	if len(t.exits) > exitsKept {
		t.exits = slices.Delete(t.exits, 0, len(t.exits)-exitsKept)
	}
	t.releaseSpawnerLocked()
	t.mu.Unlock()

	attrs := []any{"id", ex.ID, "code", code, "ran_for", ex.RanFor.Round(time.Millisecond), "log", ex.Log}
	if sig != 0 {
		attrs = append(attrs, "signal", sig.String())
	}
	if ps := inst.cmd.ProcessState; ps == nil {
		attrs = append(attrs, "error", waitErr)
	}
	switch {
	case ex.Crashed:
		t.logger.Warn("worker instance crashed", append(attrs, "last_output", lastOutput)...)
	case abnormal && !ex.Stopped:
		t.logger.Warn("worker instance failed", append(attrs, "last_output", lastOutput)...)
	default:
		t.logger.Info("worker instance exited", attrs...)
	}
}

// crashLocked records a crash of an instance started at startedAt. Crashes
// of instances launched before the last counted one belong to the same
// attempt, so a batch of n that all fail doubles the backoff once, not n
// times.
func (t *Target) crashLocked(startedAt, now time.Time, reason string) {
	t.lastFailure = reason
	if t.crashes > 0 && !startedAt.After(t.lastCrash) {
		return
	}
	t.crashes++
	t.lastCrash = now
	delay := t.cfg.CrashBackoffMin
	for i := 1; i < t.crashes && delay < t.cfg.CrashBackoffMax; i++ {
		delay *= 2
	}
	t.retryAt = now.Add(min(delay, t.cfg.CrashBackoffMax))
}

// endCrashLoopLocked resets the backoff once an instance launched since the
// last crash has been alive for CrashWindow: the command works again.
func (t *Target) endCrashLoopLocked(now time.Time) {
	for _, inst := range t.instances {
		if t.crashes > 0 && !inst.gone && now.Sub(inst.startedAt) >= t.cfg.CrashWindow {
			t.endCrashLoopIfLocked(inst.startedAt)
		}
	}
}

func (t *Target) endCrashLoopIfLocked(startedAt time.Time) {
	if t.crashes == 0 || !startedAt.After(t.lastCrash) {
		return
	}
	t.logger.Info("local target: workers run again; crash-loop backoff reset", "crashes", t.crashes)
	t.crashes, t.loggedStep = 0, 0
	t.retryAt = time.Time{}
}

// releaseSpawnerLocked lets the spawner's thread go once no child of it is
// left, so an idle target holds no thread and no goroutine.
func (t *Target) releaseSpawnerLocked() {
	if t.spawner != nil && len(t.instances) == 0 {
		t.spawner.stop()
		t.spawner = nil
	}
}

// Instances lists the workers that have not exited, oldest first. A worker
// is running from the moment its process starts (whether it has reached the
// broker yet is the registry's business) and stopping once Shutdown has
// signalled it.
func (t *Target) Instances(context.Context) ([]target.Instance, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]target.Instance, 0, len(t.instances))
	for _, inst := range t.instances {
		if !inst.gone {
			out = append(out, target.Instance{ID: inst.id, State: inst.state, StartedAt: inst.startedAt})
		}
	}
	slices.SortFunc(out, func(a, b target.Instance) int {
		return cmp.Or(a.StartedAt.Compare(b.StartedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Protect does nothing: nothing removes local processes on its own.
func (t *Target) Protect(context.Context, []string) error { return nil }

// Shutdown sends SIGTERM to every worker's process group, waits up to
// StopGrace for them to exit, SIGKILLs the groups of those left, and returns
// once every worker has been reaped. If ctx ends first the SIGKILL comes
// early and Shutdown still waits for the reaping, then reports that the
// grace was cut short. Later calls wait for the first to finish and return
// nil; Launch fails from the first call on.
func (t *Target) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		select {
		case <-t.shutDown:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	t.closed = true
	if len(t.instances) > 0 {
		t.logger.Info("local target: stopping workers", "count", len(t.instances), "stop_grace", t.cfg.StopGrace)
	}
	for _, inst := range t.instances {
		inst.state = target.StateStopping
		t.signalLocked(inst, syscall.SIGTERM)
	}
	t.mu.Unlock()
	defer close(t.shutDown)

	// Only Launch adds to wg, and it refuses from now on.
	allGone := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(allGone)
	}()
	grace := time.NewTimer(t.cfg.StopGrace)
	defer grace.Stop()
	var cut error
	select {
	case <-allGone:
		return nil
	case <-grace.C:
	case <-ctx.Done():
		cut = context.Cause(ctx)
	}
	t.mu.Lock()
	var killed []string
	for _, inst := range t.instances {
		if !inst.gone {
			killed = append(killed, inst.id)
			t.signalLocked(inst, syscall.SIGKILL)
		}
	}
	t.mu.Unlock()
	if len(killed) > 0 {
		slices.Sort(killed)
		reason := "still running after the stop grace"
		if cut != nil {
			reason = "shutdown cut short"
		}
		t.logger.Warn("local target: killing workers: "+reason, "ids", killed, "stop_grace", t.cfg.StopGrace)
	}
	<-allGone
	if cut != nil && len(killed) > 0 {
		return fmt.Errorf("local target: shutdown cut short, %d worker(s) killed before the stop grace ended: %w", len(killed), cut)
	}
	return nil
}

func (t *Target) signalLocked(inst *instance, sig syscall.Signal) {
	if inst.gone {
		return
	}
	inst.signalled = true
	signal := signalGroup
	if sig == syscall.SIGTERM && t.cfg.TermLeaderOnly {
		signal = func(p *os.Process, sig syscall.Signal) error { return p.Signal(sig) }
	}
	if err := signal(inst.cmd.Process, sig); err != nil {
		t.logger.Warn("local target: cannot signal worker", "id", inst.id, "signal", sig.String(), "error", err)
	}
}

// Exits returns the exits recorded since the last call (at most the latest
// 128), oldest first, and forgets them.
func (t *Target) Exits() []Exit {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.exits
	t.exits = nil
	return out
}

// lastLine returns the last non-empty line of a log file, for crash reports:
// it usually says why ("cannot register with the redis broker: ...").
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 4 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		_, _ = f.Seek(-tail, io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, tail))
	s := strings.TrimRight(string(b), "\r\n\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	const maxLen = 512
	if len(s) > maxLen {
		s = s[:maxLen] + "…"
	}
	return s
}
