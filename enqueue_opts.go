package ebb

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults of the enqueue options.
const (
	QueueDefault       = "default"
	MaxAttemptsDefault = 25
	// TimeoutDefault bounds a handler's run; ebb is built for long tasks, so it
	// is generous. Set EnqueueOpts.Timeout to -1 for no timeout at all.
	TimeoutDefault   = 30 * time.Minute
	RetentionDefault = 24 * time.Hour
)

// EnqueueOpts are the options of one task. Zero fields take the args type's
// own defaults (ArgsWithOpts), then the package defaults.
type EnqueueOpts struct {
	// ID sets the task's id instead of a generated one. A second enqueue with
	// the same id is collapsed into the first (EnqueueResult.Duplicate): use
	// it for idempotent producers. At most 128 characters of A-Z a-z 0-9 _ - . :
	ID string

	// Queue defaults to QueueDefault. Names are 1–128 characters of
	// A-Z a-z 0-9 _ - . :
	Queue string

	// Delay runs the task this long after enqueue; At runs it at a given time.
	// At most one of them may be set.
	Delay time.Duration
	At    time.Time

	// Priority orders tasks within a queue; zero is PriorityNormal.
	Priority Priority

	// MaxAttempts is how many times the task may start before it goes dead;
	// zero is MaxAttemptsDefault.
	MaxAttempts int

	// Timeout bounds each attempt through the handler's context; zero is
	// TimeoutDefault and -1 means none.
	Timeout time.Duration

	// Retention is how long the finished task and its result are kept; zero
	// is RetentionDefault.
	Retention time.Duration

	// Unique prevents a second task with the same key: see UniqueOpts.
	Unique *UniqueOpts

	// Headers travel with the task (trace context, tenant, …).
	Headers map[string]string
}

// UniqueOpts make a task unique by a key within its queue. While the key is
// held, enqueueing another task with it returns the holder's id with
// Duplicate set instead of storing a second task.
type UniqueOpts struct {
	Key string
	// TTL 0 holds the key while the task is scheduled, queued, running or
	// retrying; it is released when the task succeeds, dies or is cancelled.
	// A positive TTL holds it for that long from enqueue, whatever happens.
	TTL time.Duration
}

func mergeOpts(base, over EnqueueOpts) EnqueueOpts {
	if over.ID != "" {
		base.ID = over.ID
	}
	if over.Queue != "" {
		base.Queue = over.Queue
	}
	if over.Delay != 0 || !over.At.IsZero() {
		base.Delay, base.At = over.Delay, over.At
	}
	if over.Priority != 0 {
		base.Priority = over.Priority
	}
	if over.MaxAttempts != 0 {
		base.MaxAttempts = over.MaxAttempts
	}
	if over.Timeout != 0 {
		base.Timeout = over.Timeout
	}
	if over.Retention != 0 {
		base.Retention = over.Retention
	}
	if over.Unique != nil {
		base.Unique = over.Unique
	}
	if len(over.Headers) > 0 {
		merged := make(map[string]string, len(base.Headers)+len(over.Headers))
		for k, v := range base.Headers {
			merged[k] = v
		}
		for k, v := range over.Headers {
			merged[k] = v
		}
		base.Headers = merged
	}
	return base
}

// ValidName reports whether s can name a queue or a task id.
func ValidName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '-' || c == '.' || c == ':':
		default:
			return false
		}
	}
	return true
}

// ValidKind reports whether s can name a task kind: 1–128 bytes of valid
// UTF-8 with no control characters and no white space. Kinds are freer than
// queue names because they mirror code (Celery's dotted task names, Go
// package paths) and never become broker keys; what they must not carry is
// what breaks logs, URLs and the dashboard: NUL, newlines, invisible runs.
func ValidKind(s string) bool {
	if s == "" || len(s) > 128 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

func (o *EnqueueOpts) validate() error {
	if o.ID != "" && !ValidName(o.ID) {
		return fmt.Errorf("%w: id %q: use at most 128 characters from [A-Za-z0-9_.:-]", ErrInvalidOpts, o.ID)
	}
	if !ValidName(o.Queue) {
		return fmt.Errorf("%w: queue %q: use 1–128 characters from [A-Za-z0-9_.:-]", ErrInvalidOpts, o.Queue)
	}
	if o.Delay < 0 {
		return fmt.Errorf("%w: delay %s is negative", ErrInvalidOpts, o.Delay)
	}
	if o.Delay != 0 && !o.At.IsZero() {
		return fmt.Errorf("%w: set Delay or At, not both", ErrInvalidOpts)
	}
	if o.Priority < PriorityHigh || o.Priority > PriorityLow {
		return fmt.Errorf("%w: priority %d: use PriorityHigh (1), PriorityNormal (2) or PriorityLow (3)", ErrInvalidOpts, o.Priority)
	}
	if o.MaxAttempts < 1 {
		return fmt.Errorf("%w: max attempts %d: must be at least 1", ErrInvalidOpts, o.MaxAttempts)
	}
	if o.Timeout < -1 {
		return fmt.Errorf("%w: timeout %s: use a positive duration, or -1 for none", ErrInvalidOpts, o.Timeout)
	}
	if o.Retention < 0 {
		return fmt.Errorf("%w: retention %s is negative", ErrInvalidOpts, o.Retention)
	}
	if o.Unique != nil {
		if o.Unique.Key == "" || len(o.Unique.Key) > 256 {
			return fmt.Errorf("%w: unique key must be 1–256 bytes", ErrInvalidOpts)
		}
		if o.Unique.TTL < 0 {
			return fmt.Errorf("%w: unique TTL %s is negative", ErrInvalidOpts, o.Unique.TTL)
		}
	}
	return nil
}
