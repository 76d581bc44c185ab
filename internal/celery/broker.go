// Package celery is ebb's side of an existing Python Celery fleet on a Redis
// broker: Kombu's key layout (queue lists and their priority lists, the
// unacked hash), the fleet's events, remote control through the pidbox, the
// wake-up watch on the queue keys, and results from the Redis result backend.
// It reads what Celery 5 writes and writes only what Celery itself would (a
// remote-control broadcast, a reply queue binding); it never moves a task
// message.
package celery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Kombu's Redis transport constants (kombu/transport/redis.py).
const (
	// sep joins a queue name and its priority step: "reports\x06\x163".
	sep = "\x06\x16"
	// unackedKey and unackedIndexKey hold messages a worker took and has not
	// acknowledged (always, and until the task ends with acks_late).
	unackedKey      = "unacked"
	unackedIndexKey = "unacked_index"
	bindingPrefix   = "_kombu.binding."
)

// priorityKeys are the lists of one queue in the order Kombu's BRPOP reads
// them: steps 0, 3, 6 and 9 (on Redis a lower number is served first).
func priorityKeys(queue string) []string {
	return []string{queue, queue + sep + "3", queue + sep + "6", queue + sep + "9"}
}

// BrokerConfig names a Celery app's Redis broker.
type BrokerConfig struct {
	// URL is the app's broker_url: redis://[user:pass@]host:port/db or
	// rediss://. The DB number is Kombu's virtual host and appears in its
	// fanout channel names.
	URL string
	// KeyPrefix is broker_transport_options["global_keyprefix"]: Kombu puts
	// it before every key and channel.
	KeyPrefix string
}

// Broker reads and writes Kombu's layout on one Redis database.
type Broker struct {
	rdb    *redis.Client
	db     int
	prefix string
}

// OpenBroker connects lazily (go-redis dials on first use).
func OpenBroker(cfg BrokerConfig) (*Broker, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return nil, fmt.Errorf("celery: broker %q: want redis://host:port/db, as in the app's broker_url", redactURL(cfg.URL))
	}
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("celery: broker %q: %w", redactURL(cfg.URL), err)
	}
	// Pub/sub needs its own connection, and each remote-control call holds
	// one in BRPOP for up to its timeout; the rest is a few commands a second.
	opts.PoolSize = 16
	return &Broker{rdb: redis.NewClient(opts), db: opts.DB, prefix: cfg.KeyPrefix}, nil
}

// redactURL drops the password from a broker URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// Close closes the connections.
func (b *Broker) Close() error { return b.rdb.Close() }

func (b *Broker) key(k string) string { return b.prefix + k }

// fanoutChannel is Kombu's PUBLISH topic for a fanout exchange: the prefix,
// "/<db>.", the exchange, and "/<routing key>" when there is one.
func (b *Broker) fanoutChannel(exchange, routingKey string) string {
	c := b.prefix + "/" + strconv.Itoa(b.db) + "." + exchange
	if routingKey != "" {
		c += "/" + routingKey
	}
	return c
}

// QueueCount is one Kombu queue as ebb counts it.
type QueueCount struct {
	Name string
	// Queued is the sum of LLEN over the queue's list and priority lists.
	Queued int64
	// HeadTag is the delivery tag of the message a worker would take next
	// (the right end of the highest-priority non-empty list); "" when empty.
	HeadTag string
}

// Unacked is one message in the unacked hash: taken by a worker, not yet
// acknowledged.
type Unacked struct {
	Tag    string
	TaskID string
	Queue  string
}

// Counts reads the queues' lengths and heads, and the unacked hash's
// messages for these queues: two round trips, three when the hash is
// not empty.
func (b *Broker) Counts(ctx context.Context, queues []string) ([]QueueCount, []Unacked, error) {
	pipe := b.rdb.Pipeline()
	var lens []*redis.IntCmd
	for _, q := range queues {
		for _, k := range priorityKeys(q) {
			lens = append(lens, pipe.LLen(ctx, b.key(k)))
		}
	}
	hlen := pipe.HLen(ctx, b.key(unackedKey))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, fmt.Errorf("celery: reading queue lengths: %w", err)
	}
	out := make([]QueueCount, len(queues))
	pipe = b.rdb.Pipeline()
	heads := map[int]*redis.StringCmd{}
	for i, q := range queues {
		out[i].Name = q
		for j, k := range priorityKeys(q) {
			n := lens[i*4+j].Val()
			out[i].Queued += n
			if _, ok := heads[i]; !ok && n > 0 {
				heads[i] = pipe.LIndex(ctx, b.key(k), -1)
			}
		}
	}
	var all *redis.MapStringStringCmd
	if hlen.Val() > 0 {
		all = pipe.HGetAll(ctx, b.key(unackedKey))
	}
	if len(heads) > 0 || all != nil {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, nil, fmt.Errorf("celery: reading queue heads: %w", err)
		}
	}
	for i, c := range heads {
		var e envelope
		if json.Unmarshal([]byte(c.Val()), &e) == nil {
			out[i].HeadTag = e.Properties.DeliveryTag
		}
	}
	var unacked []Unacked
	if all != nil {
		want := map[string]bool{}
		for _, q := range queues {
			want[q] = true
		}
		for tag, v := range all.Val() {
			u, ok := parseUnacked(tag, v)
			if ok && want[u.Queue] {
				unacked = append(unacked, u)
			}
		}
	}
	return out, unacked, nil
}

// parseUnacked reads an unacked hash value: [envelope, exchange, routing key].
func parseUnacked(tag, v string) (Unacked, bool) {
	var parts []json.RawMessage
	if json.Unmarshal([]byte(v), &parts) != nil || len(parts) != 3 {
		return Unacked{}, false
	}
	var e envelope
	var rk string
	if json.Unmarshal(parts[0], &e) != nil || json.Unmarshal(parts[2], &rk) != nil {
		return Unacked{}, false
	}
	var h taskHeaders
	_ = json.Unmarshal(e.Headers, &h)
	if rk == "" {
		rk = e.Properties.DeliveryInfo.RoutingKey
	}
	return Unacked{Tag: tag, TaskID: h.ID, Queue: rk}, true
}

// Result is a task's record in the Redis result backend.
type Result struct {
	Status    string          `json:"status"`
	Result    json.RawMessage `json:"result"`
	Traceback *string         `json:"traceback"`
	DateDone  string          `json:"date_done"`
	TaskID    string          `json:"task_id"`
}

// ErrNoResult: the backend has no record of the task (Celery's PENDING).
var ErrNoResult = errors.New("celery: no result stored for this task")

// ReadResult reads celery-task-meta-<id> from a Redis result backend. The
// backend's keys carry no global_keyprefix in Celery 5.2.
func ReadResult(ctx context.Context, rdb *redis.Client, id string) (*Result, error) {
	s, err := rdb.Get(ctx, "celery-task-meta-"+id).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNoResult
	}
	if err != nil {
		return nil, fmt.Errorf("celery: reading the result of %s: %w", id, err)
	}
	var r Result
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, fmt.Errorf("celery: result of %s is not Celery's JSON: %w", id, err)
	}
	return &r, nil
}

// Result reads a task's result from the broker's Redis (Celery's usual
// result_backend when it is the same server).
func (b *Broker) Result(ctx context.Context, id string) (*Result, error) {
	return ReadResult(ctx, b.rdb, id)
}
