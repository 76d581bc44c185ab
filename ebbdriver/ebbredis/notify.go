package ebbredis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/ebbdriver"
)

// subscribeTimeout bounds the wait for Redis to confirm a subscription.
const subscribeTimeout = 5 * time.Second

// pubsubHealthCheck is how long a subscription may stay silent before the
// client pings Redis to check the connection (go-redis pings every 3 s by
// default: most of an idle process's commands). A connection Redis closes
// (restart, kill) fails the pending read and is re-established at once; the
// ping only finds connections that died silently (a half-open TCP
// connection), so a long interval only delays that rare case.
const pubsubHealthCheck = 30 * time.Second

// subscribe opens a PubSub on channels and patterns and returns once Redis
// confirmed every one of them, so a message published afterwards reaches it.
// Messages that arrive in between are returned too.
func (d *Driver) subscribe(ctx context.Context, channels, patterns []string) (*redis.PubSub, []*redis.Message, error) {
	ps := d.rdb.Subscribe(ctx)
	fail := func(err error) (*redis.PubSub, []*redis.Message, error) {
		_ = ps.Close()
		return nil, nil, err
	}
	if len(channels) > 0 {
		if err := ps.Subscribe(ctx, channels...); err != nil {
			return fail(err)
		}
	}
	if len(patterns) > 0 {
		if err := ps.PSubscribe(ctx, patterns...); err != nil {
			return fail(err)
		}
	}
	var early []*redis.Message
	for want := len(channels) + len(patterns); want > 0; {
		m, err := ps.ReceiveTimeout(ctx, subscribeTimeout)
		if err != nil {
			return fail(err)
		}
		switch m := m.(type) {
		case *redis.Subscription:
			want--
		case *redis.Message:
			early = append(early, m)
		}
	}
	return ps, early, nil
}

// --- Listen ----------------------------------------------------------------------

type listener struct {
	once sync.Once
	quit chan struct{}
}

func (l *listener) stop() { l.once.Do(func() { close(l.quit) }) }

// Listen implements ebbdriver.Driver. Queue notifications come from
// P:ch:q:<q> (PSUBSCRIBE P:ch:q:* for all queues); cancel and drain requests
// from P:ch:ctl. Every listener gets every cancel request (its worker checks
// whether it holds the task); a drain request only reaches the listener of
// that worker.
func (d *Driver) Listen(ctx context.Context, p ebbdriver.ListenParams) (<-chan ebbdriver.Event, error) {
	channels := []string{d.chCtl}
	var patterns []string
	byChannel := map[string]string{}
	if len(p.Queues) == 0 {
		patterns = []string{globEscape(d.queueChannelPrefix()) + "*"}
	} else {
		for _, q := range p.Queues {
			if err := checkQueue(q); err != nil {
				return nil, fmt.Errorf("ebbredis: listen: %w", err)
			}
			ch := d.keys(q).channel
			if _, dup := byChannel[ch]; !dup {
				byChannel[ch] = q
				channels = append(channels, ch)
			}
		}
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, errors.New("ebbredis: listen: the driver is closed")
	}
	ps, early, err := d.subscribe(ctx, channels, patterns)
	if err != nil {
		return nil, fmt.Errorf("ebbredis: listen: subscribe to notifications: %w; is Redis reachable?", err)
	}
	l := &listener{quit: make(chan struct{})}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		_ = ps.Close()
		return nil, errors.New("ebbredis: listen: the driver is closed")
	}
	d.listeners[l] = struct{}{}
	d.mu.Unlock()

	out := make(chan ebbdriver.Event, 64)
	qprefix := d.queueChannelPrefix()
	toEvent := func(m *redis.Message) (ebbdriver.Event, bool) {
		if m.Channel == d.chCtl {
			var c ctlMessage
			if json.Unmarshal([]byte(m.Payload), &c) != nil {
				return ebbdriver.Event{}, false
			}
			switch c.Kind {
			case "cancel":
				return ebbdriver.Event{Kind: ebbdriver.EventCancel, Queue: c.Queue, TaskID: c.TaskID}, true
			case "drain":
				if p.WorkerID != "" && c.Worker == p.WorkerID {
					return ebbdriver.Event{Kind: ebbdriver.EventDrain, WorkerID: c.Worker}, true
				}
			}
			return ebbdriver.Event{}, false
		}
		// A queue with tasks to announce is in P:queues (Enqueue registers
		// it first), so QueueStats of this Driver lists it from now on.
		if q, ok := byChannel[m.Channel]; ok {
			d.addQueues(q)
			return ebbdriver.Event{Kind: ebbdriver.EventQueued, Queue: q}, true
		}
		if len(p.Queues) == 0 && strings.HasPrefix(m.Channel, qprefix) {
			q := m.Channel[len(qprefix):]
			d.addQueues(q)
			return ebbdriver.Event{Kind: ebbdriver.EventQueued, Queue: q}, true
		}
		return ebbdriver.Event{}, false
	}
	msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(256), redis.WithChannelHealthCheckInterval(pubsubHealthCheck))
	go func() {
		defer func() {
			_ = ps.Close()
			d.mu.Lock()
			delete(d.listeners, l)
			d.mu.Unlock()
			close(out)
		}()
		send := func(e ebbdriver.Event) bool {
			select {
			case out <- e:
				return true
			case <-ctx.Done():
			case <-l.quit:
			}
			return false
		}
		for _, m := range early {
			if e, ok := toEvent(m); ok && !send(e) {
				return
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-l.quit:
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				switch m := m.(type) {
				case *redis.Message:
					if e, ok := toEvent(m); ok && !send(e) {
						return
					}
				case *redis.Subscription:
					// Resubscribed after a reconnect: notifications of the
					// gap are lost, so tell the worker to look.
					if q, ok := byChannel[m.Channel]; ok && m.Kind == "subscribe" {
						if !send(ebbdriver.Event{Kind: ebbdriver.EventQueued, Queue: q}) {
							return
						}
					}
				}
			}
		}
	}()
	return out, nil
}

// globEscape quotes PSUBSCRIBE pattern characters.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// --- TaskAwait wake-ups ----------------------------------------------------------

// awaitHub is one subscription to P:ch:done per Driver, shared by all its
// TaskAwait calls, made on first use.
type awaitHub struct {
	d       *Driver
	mu      sync.Mutex
	ps      *redis.PubSub
	closed  bool
	done    chan struct{} // closed by close: waiters give up
	waiters map[string]map[*waiter]struct{}
}

type waiter struct{ ch chan struct{} }

func newAwaitHub(d *Driver) *awaitHub {
	return &awaitHub{d: d, done: make(chan struct{}), waiters: make(map[string]map[*waiter]struct{})}
}

func (h *awaitHub) add(ctx context.Context, id string) (*waiter, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("ebbredis: await: the driver is closed")
	}
	if h.ps == nil {
		ps, _, err := h.d.subscribe(ctx, []string{h.d.chDone}, nil)
		if err != nil {
			return nil, fmt.Errorf("ebbredis: await task %q: subscribe to completions: %w", id, err)
		}
		h.ps = ps
		go h.loop(ps.ChannelWithSubscriptions(redis.WithChannelSize(1024), redis.WithChannelHealthCheckInterval(pubsubHealthCheck)))
	}
	w := &waiter{ch: make(chan struct{}, 1)}
	ws := h.waiters[id]
	if ws == nil {
		ws = make(map[*waiter]struct{}, 1)
		h.waiters[id] = ws
	}
	ws[w] = struct{}{}
	return w, nil
}

func (h *awaitHub) remove(id string, w *waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ws := h.waiters[id]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(h.waiters, id)
		}
	}
}

func (h *awaitHub) loop(msgs <-chan any) {
	for m := range msgs {
		h.mu.Lock()
		switch m := m.(type) {
		case *redis.Message:
			for w := range h.waiters[m.Payload] {
				wake(w)
			}
		case *redis.Subscription:
			// Resubscribed after a reconnect: wake-ups may have been lost.
			for _, ws := range h.waiters {
				for w := range ws {
					wake(w)
				}
			}
		}
		h.mu.Unlock()
	}
}

func wake(w *waiter) {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func (h *awaitHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		close(h.done)
	}
	h.closed = true
	if h.ps != nil {
		_ = h.ps.Close()
		h.ps = nil
	}
}
