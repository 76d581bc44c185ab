package celery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The remote-control mailbox (kombu/pidbox.py, celery/app/control.py):
// requests are published on the fanout exchange "celery.pidbox"; replies
// come back on a list bound to the direct exchange "reply.celery.pidbox".
const (
	pidboxExchange = "celery.pidbox"
	replyExchange  = "reply.celery.pidbox"
)

var clock atomic.Int64 // a Lamport clock for request headers, as Kombu keeps one

type controlRequest struct {
	Method      string         `json:"method"`
	Arguments   map[string]any `json:"arguments"`
	Destination []string       `json:"destination"`
	Pattern     *string        `json:"pattern"`
	Matcher     *string        `json:"matcher"`
	Ticket      string         `json:"ticket,omitempty"`
	ReplyTo     *replyTo       `json:"reply_to,omitempty"`
}

type replyTo struct {
	Exchange   string `json:"exchange"`
	RoutingKey string `json:"routing_key"`
}

// Broadcast sends a remote-control command without waiting for replies
// ("cast"): to every worker when destination is empty, otherwise to the
// named nodenames.
func (b *Broker) Broadcast(ctx context.Context, method string, args map[string]any, destination ...string) error {
	return b.publishControl(ctx, controlRequest{Method: method, Arguments: args, Destination: destination}, 0)
}

func (b *Broker) publishControl(ctx context.Context, req controlRequest, ttl time.Duration) error {
	if req.Arguments == nil {
		req.Arguments = map[string]any{}
	}
	expires := 0.0
	if ttl > 0 {
		expires = float64(time.Now().Add(ttl).UnixNano()) / 1e9
	}
	msg, err := newEnvelope(req, map[string]any{"clock": clock.Add(1), "expires": expires}, pidboxExchange, "")
	if err != nil {
		return err
	}
	if err := b.rdb.Publish(ctx, b.fanoutChannel(pidboxExchange, ""), msg).Err(); err != nil {
		return fmt.Errorf("celery: remote control %s: %w", req.Method, err)
	}
	return nil
}

// Call sends a remote-control command to one worker and waits up to
// timeout for its reply, as `celery inspect <method> -d <nodename>` does.
// It binds a reply queue for the call and removes it afterwards.
func (b *Broker) Call(ctx context.Context, nodename, method string, args map[string]any, timeout time.Duration) (json.RawMessage, error) {
	oid := uuid4()
	queue := oid + "." + replyExchange
	binding := b.key(bindingPrefix + replyExchange)
	member := oid + sep + sep + queue
	if err := b.rdb.SAdd(ctx, binding, member).Err(); err != nil {
		return nil, fmt.Errorf("celery: binding a reply queue: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, _ = b.rdb.TxPipelined(cctx, func(p redis.Pipeliner) error {
			p.SRem(cctx, binding, member)
			p.Del(cctx, b.key(queue))
			return nil
		})
	}()
	ticket := uuid4()
	req := controlRequest{Method: method, Arguments: args, Destination: []string{nodename}, Ticket: ticket,
		ReplyTo: &replyTo{Exchange: replyExchange, RoutingKey: oid}}
	if err := b.publishControl(ctx, req, timeout); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("celery: %s gave no reply to %s within %s", nodename, method, timeout)
		}
		// BRPOP's timeout has a resolution of 10 ms on Redis 6+.
		res, err := b.rdb.BRPop(ctx, max(left, 10*time.Millisecond), b.key(queue)).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("celery: waiting for %s's reply to %s: %w", nodename, method, err)
		}
		var e envelope
		if err := json.Unmarshal([]byte(res[1]), &e); err != nil {
			continue
		}
		var h struct {
			Ticket string `json:"ticket"`
		}
		_ = json.Unmarshal(e.Headers, &h)
		if h.Ticket != ticket {
			continue
		}
		body, err := e.payload()
		if err != nil {
			return nil, err
		}
		var byNode map[string]json.RawMessage
		if err := json.Unmarshal(body, &byNode); err != nil {
			return nil, fmt.Errorf("celery: reply to %s is not {nodename: reply}: %w", method, err)
		}
		if r, ok := byNode[nodename]; ok {
			return r, nil
		}
	}
}

// Shutdown asks one worker for Celery's warm shutdown: it stops taking
// messages, finishes the tasks it runs, gives back (with acks_late, or
// unstarted prefetched messages) what it holds, and exits 0.
func (b *Broker) Shutdown(ctx context.Context, nodename string) error {
	return b.Broadcast(ctx, "shutdown", nil, nodename)
}

// EnableEvents turns task events on in every worker, as Flower does; a
// worker started with -E has them on already.
func (b *Broker) EnableEvents(ctx context.Context) error {
	return b.Broadcast(ctx, "enable_events", nil)
}

// Settings asks a worker for the settings that decide whether scale-in is
// safe (remote control `conf`, which lists the settings that differ from
// Celery's defaults; with defaults its reply holds Python's Infinity, which
// is not JSON).
func (b *Broker) Settings(ctx context.Context, nodename string, timeout time.Duration) (Settings, error) {
	raw, err := b.Call(ctx, nodename, "conf", nil, timeout)
	if err != nil {
		return Settings{}, err
	}
	var conf struct {
		AcksLate *bool `json:"task_acks_late"`
		Prefetch *int  `json:"worker_prefetch_multiplier"`
		Conc     *int  `json:"worker_concurrency"`
	}
	if err := json.Unmarshal(raw, &conf); err != nil {
		return Settings{}, fmt.Errorf("celery: %s's conf reply: %w", nodename, err)
	}
	s := Settings{PrefetchMultiplier: 4} // Celery's defaults
	if conf.AcksLate != nil {
		s.AcksLate = *conf.AcksLate
	}
	if conf.Prefetch != nil {
		s.PrefetchMultiplier = *conf.Prefetch
	}
	if conf.Conc != nil {
		s.Concurrency = *conf.Conc
	}
	return s, nil
}
