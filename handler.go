package ebb

import (
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"time"
)

// HandlerFunc runs one task. Its result is stored as JSON. Middleware wraps
// HandlerFuncs.
type HandlerFunc func(ctx context.Context, task *TaskInfo) (any, error)

// HandlerOpts tune the tasks of one kind.
type HandlerOpts struct {
	// RetryPolicy overrides the worker's policy for this kind.
	RetryPolicy RetryPolicy
	// Timeout overrides each task's own timeout for this kind when set.
	Timeout time.Duration
}

// Handlers maps task kinds to the functions that run them. Register every
// kind before the worker starts.
type Handlers struct {
	mu    sync.RWMutex
	kinds map[string]*handler
}

type handler struct {
	fn   HandlerFunc
	opts HandlerOpts
}

// NewHandlers returns an empty registry.
func NewHandlers() *Handlers {
	return &Handlers{kinds: make(map[string]*handler)}
}

// Handle registers fn for the kind of T. Args are decoded from JSON into T; a
// task whose args cannot be decoded goes to the dead state (another attempt
// would not help). fn's result is stored as the task's result.
func Handle[T Args, R any](h *Handlers, fn func(ctx context.Context, task *Task[T]) (R, error), opts ...HandlerOpts) {
	var zero T
	kind := zero.Kind()
	emptyIsZero := emptyObjectIsZero[T]()
	h.add(kind, func(ctx context.Context, info *TaskInfo) (any, error) {
		var args T
		// For {} the zero T is what json.Unmarshal would make, at a fraction
		// of the cost: decoding is most of a short task's CPU in the worker.
		if !emptyIsZero || string(info.EncodedArgs) != "{}" {
			if err := json.Unmarshal(info.EncodedArgs, &args); err != nil {
				return nil, NoRetry(fmt.Errorf("cannot decode args of kind %q into %T: %w", kind, args, err))
			}
		}
		return fn(ctx, &Task[T]{TaskInfo: info, Args: args})
	}, opts)
}

// emptyObjectIsZero reports whether json.Unmarshal of {} into a T leaves
// the zero T without error: T is a struct (a map would be made, a pointer
// allocated) that decodes itself by no method of its own.
func emptyObjectIsZero[T any]() bool {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		return false
	}
	for _, u := range []reflect.Type{reflect.TypeFor[json.Unmarshaler](), reflect.TypeFor[encoding.TextUnmarshaler]()} {
		if t.Implements(u) || reflect.PointerTo(t).Implements(u) {
			return false
		}
	}
	return true
}

// HandleRaw registers fn for kind with the args left as raw JSON, for kinds
// whose shape is not a Go type (or is enqueued from another language).
func HandleRaw(h *Handlers, kind string, fn func(ctx context.Context, task *Task[json.RawMessage]) (any, error), opts ...HandlerOpts) {
	h.add(kind, func(ctx context.Context, info *TaskInfo) (any, error) {
		return fn(ctx, &Task[json.RawMessage]{TaskInfo: info, Args: info.EncodedArgs})
	}, opts)
}

func (h *Handlers) add(kind string, fn HandlerFunc, opts []HandlerOpts) {
	if !ValidKind(kind) {
		panic(fmt.Sprintf("ebb: Handle: kind %q is not valid: use 1–128 bytes of UTF-8 without control characters or spaces", kind))
	}
	if len(opts) > 1 {
		panic("ebb: Handle: pass at most one HandlerOpts")
	}
	entry := &handler{fn: fn}
	if len(opts) == 1 {
		entry.opts = opts[0]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.kinds[kind]; dup {
		panic(fmt.Sprintf("ebb: Handle: kind %q is registered twice", kind))
	}
	h.kinds[kind] = entry
}

func (h *Handlers) lookup(kind string) *handler {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.kinds[kind]
}

// Kinds lists the registered kinds, sorted.
func (h *Handlers) Kinds() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]string, 0, len(h.kinds))
	for k := range h.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
