package ebb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/ebbq/ebb/internal/tid"
)

// MaxArgsBytesDefault is the largest encoded args a client accepts. Brokers
// keep tasks in memory (Redis) or in one file (SQLite): large payloads belong
// in object storage, with a reference in the args.
const MaxArgsBytesDefault = 512 << 10

// ClientConfig configures a Client. The zero value is ready to use.
type ClientConfig struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// MaxArgsBytes caps the encoded args of one task; zero is
	// MaxArgsBytesDefault.
	MaxArgsBytes int

	// BeforeEnqueue, if set, sees every task before it is stored; set Headers
	// there to propagate trace context from ctx.
	BeforeEnqueue func(ctx context.Context, task *TaskInfo)

	// Clock defaults to the wall clock; tests move time with a stub.
	Clock ebbtype.Clock
}

// Client enqueues tasks and reads, waits for and cancels them. It is safe for
// concurrent use.
type Client struct {
	driver ebbdriver.Driver
	config ClientConfig
}

// NewClient returns a client of the broker behind driver.
func NewClient(driver ebbdriver.Driver, config *ClientConfig) (*Client, error) {
	if driver == nil {
		return nil, errors.New("ebb: NewClient needs a driver (ebbredis.Open or ebbsqlite.Open)")
	}
	c := &Client{driver: driver}
	if config != nil {
		c.config = *config
	}
	if c.config.Logger == nil {
		c.config.Logger = slog.Default()
	}
	c.config.Clock = clock.Or(c.config.Clock)
	if c.config.MaxArgsBytes <= 0 {
		c.config.MaxArgsBytes = MaxArgsBytesDefault
	}
	return c, nil
}

func (c *Client) now() time.Time { return c.config.Clock.Now() }

// EnqueueResult is the answer to an enqueue.
type EnqueueResult struct {
	// ID is the task's id; when Duplicate, the id of the task that already
	// held the id or unique key.
	ID string `json:"id"`
	// Duplicate is set when no new task was stored because of its id or
	// unique key.
	Duplicate bool `json:"duplicate"`
	// State is the new task's first state (queued or scheduled).
	State State `json:"state"`
}

// EnqueueParams is one task of a batch: typed Args, or Kind with raw JSON.
type EnqueueParams struct {
	Args    Args            // typed args; Kind comes from Args.Kind()
	Kind    string          // with RawArgs, for producers without a Go type
	RawArgs json.RawMessage // JSON; nil means {}
	Opts    *EnqueueOpts
}

// Enqueue stores one task with typed args.
func (c *Client) Enqueue(ctx context.Context, args Args, opts *EnqueueOpts) (*EnqueueResult, error) {
	res, err := c.EnqueueMany(ctx, []EnqueueParams{{Args: args, Opts: opts}})
	if err != nil {
		return nil, err
	}
	return &res[0], nil
}

// EnqueueRaw stores one task of the given kind with args already encoded as
// JSON (for tasks defined by another language or read from a CLI).
func (c *Client) EnqueueRaw(ctx context.Context, kind string, args json.RawMessage, opts *EnqueueOpts) (*EnqueueResult, error) {
	res, err := c.EnqueueMany(ctx, []EnqueueParams{{Kind: kind, RawArgs: args, Opts: opts}})
	if err != nil {
		return nil, err
	}
	return &res[0], nil
}

// EnqueueMany stores a batch of tasks in one round trip per queue. Either
// every task is valid and the batch is sent, or an error names the first bad
// one and nothing is sent.
func (c *Client) EnqueueMany(ctx context.Context, params []EnqueueParams) ([]EnqueueResult, error) {
	return c.enqueue(ctx, params, c.driver.Enqueue)
}

// enqueue validates and fills in a batch, then stores it with store: the
// driver's own Enqueue, or its EnqueueTx inside a caller's transaction.
func (c *Client) enqueue(ctx context.Context, params []EnqueueParams,
	store func(context.Context, []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error)) ([]EnqueueResult, error) {
	now := c.now()
	records := make([]*ebbtype.TaskInfo, len(params))
	for i := range params {
		rec, err := c.record(ctx, &params[i], now)
		if err != nil {
			if len(params) > 1 {
				return nil, fmt.Errorf("ebb: enqueue task %d of %d: %w", i+1, len(params), err)
			}
			return nil, fmt.Errorf("ebb: enqueue: %w", err)
		}
		records[i] = rec
	}
	stored, err := store(ctx, records)
	if err != nil {
		return nil, fmt.Errorf("ebb: enqueue: %w", err)
	}
	out := make([]EnqueueResult, len(stored))
	for i, s := range stored {
		out[i] = EnqueueResult{ID: s.ID, Duplicate: s.Duplicate, State: records[i].State}
	}
	return out, nil
}

func (c *Client) record(ctx context.Context, p *EnqueueParams, now time.Time) (*ebbtype.TaskInfo, error) {
	var (
		kind string
		args []byte
		opts EnqueueOpts
	)
	switch {
	case p.Args != nil:
		kind = p.Args.Kind()
		if wo, ok := p.Args.(ArgsWithOpts); ok {
			opts = wo.EnqueueOpts()
		}
		var err error
		if args, err = json.Marshal(p.Args); err != nil {
			return nil, fmt.Errorf("encode args of kind %q as JSON: %w", kind, err)
		}
	case p.Kind != "":
		kind = p.Kind
		args = p.RawArgs
		if len(args) == 0 {
			args = []byte("{}")
		}
		if !json.Valid(args) {
			return nil, fmt.Errorf("args of kind %q are not valid JSON: %.80q", kind, args)
		}
	default:
		return nil, errors.New("no task: set Args, or Kind with RawArgs")
	}
	if !ValidKind(kind) {
		return nil, fmt.Errorf("%w: kind %q: use 1–128 bytes of UTF-8 without control characters or spaces", ErrInvalidOpts, kind)
	}
	if len(args) > c.config.MaxArgsBytes {
		return nil, fmt.Errorf("%w: kind %q args are %d bytes, the limit is %d (ClientConfig.MaxArgsBytes); store large data elsewhere and pass a reference", ErrArgsTooLarge, kind, len(args), c.config.MaxArgsBytes)
	}
	if p.Opts != nil {
		opts = mergeOpts(opts, *p.Opts)
	}
	if opts.Queue == "" {
		opts.Queue = QueueDefault
	}
	if opts.Priority == 0 {
		opts.Priority = PriorityNormal
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = MaxAttemptsDefault
	}
	if opts.Timeout == 0 {
		opts.Timeout = TimeoutDefault
	}
	if opts.Retention == 0 {
		opts.Retention = RetentionDefault
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}

	runAt := now
	switch {
	case opts.Delay > 0:
		runAt = now.Add(opts.Delay)
	case !opts.At.IsZero() && opts.At.After(now):
		runAt = opts.At
	}
	id := opts.ID
	if id == "" {
		id = tid.NewAt(now)
	}
	rec := &ebbtype.TaskInfo{
		ID:          id,
		Kind:        kind,
		Queue:       opts.Queue,
		EncodedArgs: args,
		Headers:     opts.Headers,
		Priority:    opts.Priority,
		RunAt:       runAt,
		MaxAttempts: opts.MaxAttempts,
		Retention:   opts.Retention,
		EnqueuedAt:  now,
		State:       StateQueued,
	}
	if opts.Timeout > 0 {
		rec.Timeout = opts.Timeout
	}
	if runAt.After(now) {
		rec.State = StateScheduled
	}
	if opts.Unique != nil {
		rec.UniqueKey, rec.UniqueTTL = opts.Unique.Key, opts.Unique.TTL
	}
	if c.config.BeforeEnqueue != nil {
		// A copy: the hook may set Headers and nothing else.
		info := *rec
		c.config.BeforeEnqueue(ctx, &info)
		rec.Headers = info.Headers
	}
	return rec, nil
}

// Task returns a task by id.
func (c *Client) Task(ctx context.Context, id string) (*TaskInfo, error) {
	info, err := c.driver.TaskGet(ctx, id)
	if err != nil {
		return nil, notFoundOr(err, "read", "task "+id)
	}
	return info, nil
}

// Wait blocks until the task finishes or ctx is done. For a succeeded task it
// returns the task (with Result) and nil; for a dead or cancelled one the
// task and a *TaskFailedError.
func (c *Client) Wait(ctx context.Context, id string) (*TaskInfo, error) {
	info, err := c.driver.TaskAwait(ctx, id)
	if err != nil {
		return nil, notFoundOr(err, "wait for", "task "+id)
	}
	if info.State != StateSucceeded {
		return info, &TaskFailedError{Task: info}
	}
	return info, nil
}

// WaitResult waits for a task and decodes its result into R.
func WaitResult[R any](ctx context.Context, c *Client, id string) (R, error) {
	var out R
	info, err := c.Wait(ctx, id)
	if err != nil {
		return out, err
	}
	if len(info.Result) > 0 {
		if err := json.Unmarshal(info.Result, &out); err != nil {
			return out, fmt.Errorf("ebb: decode result of task %s into %T: %w", id, out, err)
		}
	}
	return out, nil
}

// Cancel cancels a task. A task that has not started is cancelled at once; a
// running one has its handler's context cancelled wherever it runs (with
// cause ErrTaskCancelled) and ends cancelled unless the handler still
// succeeds. It returns the task's state after the call: StateCancelled,
// StateRunning (cancellation requested), or the terminal state it already
// had.
func (c *Client) Cancel(ctx context.Context, id string) (State, error) {
	st, err := c.driver.TaskCancel(ctx, id, c.now())
	if err != nil {
		return "", notFoundOr(err, "cancel", "task "+id)
	}
	return st, nil
}
