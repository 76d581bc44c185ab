// Package cli is the ebb command line: one file per command, all sharing the
// flag handling, broker opening and error conventions defined here.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/brokerurl"
)

// Exit codes, documented in the README.
const (
	ExitOK       = 0 // success
	ExitFailure  = 1 // the operation failed: broker unreachable, task failed, …
	ExitUsage    = 2 // bad command line: unknown command or flag, bad JSON, bad URL
	ExitNotFound = 3 // the named task or worker does not exist
)

// Version is set at build time with -ldflags "-X …cli.Version=…".
var Version = "dev"

type command struct {
	name    string
	summary string
	run     func(env *env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"up", "run everything on this machine: SQLite broker, control plane, an autoscaled pool", runUp},
		{"server", "run the control plane: maintenance, autoscaler, HTTP API and metrics", runServer},
		{"worker", "run a worker with the built-in kinds (noop, sleep, fail)", runWorker},
		{"worker-prestop", "a pod's preStop hook: drain the pod's worker and wait until it holds nothing", runWorkerPrestop},
		{"celery-exec", "start a Celery worker on ECS or Kubernetes under its instance id ({id} in its arguments)", runCeleryExec},
		{"enqueue", "enqueue tasks", runEnqueue},
		{"inspect", "show queues, workers or one task", runInspect},
		{"cancel", "cancel a task (queued or running)", runCancel},
		{"dead", "list, retry or purge dead tasks", runDead},
		{"schedule", "list, add, remove, pause, resume or run periodic schedules (beat)", runSchedule},
		{"migrate", "apply, revert or show the schema migrations of a postgres:// broker", runMigrate},
		{"bench", "measure enqueue rate, burn-down rate and pickup latency", runBench},
		{"version", "print the version and the commit it was built from", func(e *env, _ []string) error {
			fmt.Fprintln(e.stdout, versionLine())
			return nil
		}},
	}
}

// env is what every command gets.
type env struct {
	stdout, stderr io.Writer
	logger         *slog.Logger
}

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// notFoundError is a not-found the CLI words itself, because the client's
// sentence lacks what only the command knows (the action it was asked for):
// exit code 3.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

func notFoundf(format string, args ...any) error {
	return &notFoundError{fmt.Sprintf(format, args...)}
}

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		// A script that forgot its command must not pass for a success.
		printHelp(stderr)
		return ExitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return Main([]string{args[1], "--help"}, stdout, stderr)
		}
		printHelp(stdout)
		return ExitOK
	case "-v", "-version", "--version":
		args = []string{"version"}
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(e, args[1:])
		return report(e, c.name, err)
	}
	fmt.Fprintf(stderr, "ebb: unknown command %q; run `ebb help` for the list\n", args[0])
	return ExitUsage
}

func report(e *env, name string, err error) int {
	var (
		ue  *usageError
		nf  *ebb.NotFoundError
		cnf *notFoundError
	)
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "ebb %s: %s\n", name, ue.msg)
		return ExitUsage
	case errors.Is(err, brokerurl.ErrBadURL):
		fmt.Fprintf(e.stderr, "ebb %s: %s\n", name, err)
		return ExitUsage
	case errors.As(err, &cnf):
		fmt.Fprintf(e.stderr, "ebb %s: %s\n", name, cnf.msg)
		return ExitNotFound
	case errors.As(err, &nf):
		// The client's sentence names the thing that is missing; whatever
		// was wrapped around it on the way up would only repeat the name.
		fmt.Fprintf(e.stderr, "ebb %s: %s\n", name, nf)
		return ExitNotFound
	case errors.Is(err, ebb.ErrTaskNotFound), errors.Is(err, ebb.ErrWorkerNotFound), errors.Is(err, ebb.ErrScheduleNotFound):
		// A command that says what is missing in its own words wraps the
		// sentinel only for this exit code; its text ("…: task not found")
		// would repeat the sentence.
		msg := err.Error()
		for _, s := range []error{ebb.ErrTaskNotFound, ebb.ErrWorkerNotFound, ebb.ErrScheduleNotFound} {
			msg = strings.TrimSuffix(msg, ": "+s.Error())
		}
		fmt.Fprintf(e.stderr, "ebb %s: %s\n", name, msg)
		return ExitNotFound
	default:
		fmt.Fprintf(e.stderr, "ebb %s: %s\n", name, err)
		return ExitFailure
	}
}

// readBuildInfo is debug.ReadBuildInfo; tests replace it because a test
// binary carries no VCS stamp.
var readBuildInfo = debug.ReadBuildInfo

// versionLine is what `ebb version` prints: the release set with -ldflags
// and the commit the Go toolchain stamped into the binary, so that a "dev"
// build can still be traced to its source.
func versionLine() string {
	v := Version
	info, ok := readBuildInfo()
	if !ok {
		return "ebb " + v + " (no build information in this binary)"
	}
	var rev, at string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		// `go install …@v1.2.3` sets no -ldflags and stamps no commit, but
		// does stamp the release. (In a checkout the toolchain makes up a
		// pseudo-version from the commit, which the line below shows anyway.)
		if v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		return "ebb " + v + " (no VCS information: built outside a git checkout or with -buildvcs=false)"
	}
	parts := []string{"commit " + rev[:min(12, len(rev))]}
	if at != "" {
		parts = append(parts, at)
	}
	if dirty {
		parts = append(parts, "dirty")
	}
	return fmt.Sprintf("ebb %s (%s)", v, strings.Join(parts, ", "))
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `ebb — a task queue whose workers scale to zero.

Usage: ebb COMMAND [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every command takes --broker URL (or EBB_BROKER): redis://host:port/db,
postgres://host:5432/dbname or sqlite:path/to/file.db (default sqlite:ebb.db).
Run `+"`ebb COMMAND --help`"+` for a command's flags and an example.

Exit codes: 0 ok, 1 failed, 2 bad usage or input, 3 not found.
`)
}

// flagSet makes a command's flag set with the shared flags and an example.
type flagSet struct {
	*flag.FlagSet
	broker   *string
	logLevel *string
	usage    func()
}

func newFlagSet(e *env, name, usage, example string) *flagSet {
	fs := flag.NewFlagSet("ebb "+name, flag.ContinueOnError)
	// On a bad flag the flag package prints the error and the whole usage
	// text; parse reports it as a one-line usage error instead, and the usage
	// text is printed for --help only.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	def := os.Getenv("EBB_BROKER")
	if def == "" {
		def = brokerurl.Default
	}
	f := &flagSet{FlagSet: fs}
	f.broker = fs.String("broker", def, "broker URL: redis://host:port/db, postgres://host:5432/dbname or sqlite:path/to/file.db (env EBB_BROKER)")
	f.logLevel = fs.String("log-level", "info", "log level: debug, info, warn or error")
	f.usage = func() {
		fmt.Fprintf(e.stderr, "Usage: ebb %s\n\nExample:\n  %s\n\nFlags:\n", usage, example)
		fs.SetOutput(e.stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return f
}

// parse parses flags that may come before, between or after positional
// arguments (Go's flag package stops at the first positional) and returns
// the positionals. Everything after the first "--" is positional, so an
// argument that starts with '-' (args JSON such as -1) can be passed.
func (f *flagSet) parse(e *env, args []string) ([]string, error) {
	// The split must happen here: Parse would consume that "--" and the
	// loop below, restarting Parse after each positional, would read what
	// follows it as flags again.
	var tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.usage()
				return nil, err
			}
			return nil, usagef("%v (see --help)", err)
		}
		args = f.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	pos = append(pos, tail...)
	var level slog.Level
	if err := level.UnmarshalText([]byte(*f.logLevel)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", *f.logLevel)
	}
	e.logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	// go-redis logs dial failures straight to stderr; they would bury the
	// one-line error (or the worker's own retry warnings) under repeats.
	redis.SetLogger(redisLogger{e.logger})
	return pos, nil
}

// redisLogger passes go-redis's internal messages to the command's logger
// at debug level.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// openBroker opens the broker named by --broker under a context that SIGINT
// and SIGTERM cancel; closeBroker releases both.
func (f *flagSet) openBroker(e *env) (ctx context.Context, b *brokerurl.Broker, closeBroker func(), err error) {
	ctx, stop := signalContext()
	b, err = brokerurl.Open(ctx, *f.broker, e.logger)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return ctx, b, func() { b.Close(); stop() }, nil
}

// openForRead is openBroker for one-shot reads: the context also ends after
// 30 s, so a broker that accepts connections but never answers does not
// hang the command.
func (f *flagSet) openForRead(e *env) (context.Context, *brokerurl.Broker, func(), error) {
	ctx, b, closeBroker, err := f.openBroker(e)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	return ctx, b, func() { cancel(); closeBroker() }, nil
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// printRows prints rows as indented JSON, or as a table: the tab-separated
// header, then one line per row.
func printRows[T any](e *env, asJSON bool, rows []T, flags uint, header string, line func(T) string) error {
	if asJSON {
		return printJSON(e.stdout, rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', flags)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, line(r))
	}
	return tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTerminal reports whether w is a terminal, so progress is shown only to
// people and never into pipes or files.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func printJSONLine(e *env, v any) error {
	return json.NewEncoder(e.stdout).Encode(v)
}
