package ebbpostgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ebbq/ebb/ebbdriver"
)

// event is a notification's JSON payload. K is "q" (tasks became Queued in
// Q), "c" (cancel running task ID of queue Q on worker W), "d" (drain
// worker W), "f" (awaited task ID finished or went away) or "a" (tasks went
// away in bulk: every awaiter re-reads).
type event struct {
	K  string `json:"k"`
	Q  string `json:"q,omitempty"`
	ID string `json:"id,omitempty"`
	W  string `json:"w,omitempty"`
}

// notifyTx sends ev when tx commits.
func (d *Driver) notifyTx(ctx context.Context, tx pgx.Tx, ev event) error {
	b, _ := json.Marshal(ev)
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, d.channel, string(b))
	return err
}

func (d *Driver) notifyBestEffort(ctx context.Context, ev event) {
	b, _ := json.Marshal(ev)
	if _, err := d.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, d.channel, string(b)); err != nil {
		d.log.Warn("ebbpostgres: notifying", "event", ev.K, "error", err)
	}
}

func randToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// subBuffer is each listener's channel capacity. Queued events for a queue
// are interchangeable, so when a slow listener's buffer is full one more is
// dropped rather than blocking every other listener.
const subBuffer = 256

type subscriber struct {
	queues map[string]bool // nil: all
	worker string
	ch     chan ebbdriver.Event
	await  string        // for awaiters: the task id
	wake   chan struct{} // for awaiters
}

// notifier owns the driver's one listening connection and fans its
// notifications out to Listen's channels and TaskAwait's wake-ups. The
// connection opens on the first Listen or TaskAwait. When it fails, every
// listener's channel is closed (the worker and the control plane then
// subscribe again and fetch once, in case they missed something) and
// awaiters are woken to re-read; the next subscription reconnects.
type notifier struct {
	d      *Driver
	mu     sync.Mutex
	conn   *pgx.Conn
	cancel context.CancelFunc // stops the reader
	subs   map[*subscriber]struct{}
	wg     sync.WaitGroup
	done   bool
}

func newNotifier(d *Driver) *notifier {
	return &notifier{d: d, subs: map[*subscriber]struct{}{}}
}

// ensure connects and LISTENs, unless already done; n.mu is held.
func (n *notifier) ensure(ctx context.Context) error {
	if n.done {
		return errClosed
	}
	if n.conn != nil {
		return nil
	}
	cfg := n.d.pool.Config().ConnConfig.Copy()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return fmt.Errorf("opening the listening connection: %w", err)
	}
	if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{n.d.channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("listening on %s: %w", n.d.channel, err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	n.conn, n.cancel = conn, rcancel
	n.wg.Go(func() { n.read(rctx, conn) })
	return nil
}

func (n *notifier) read(ctx context.Context, conn *pgx.Conn) {
	defer conn.Close(context.Background())
	for {
		msg, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() == nil {
				n.d.log.Warn("ebbpostgres: lost the listening connection; listeners resubscribe", "error", err)
			}
			n.fail(conn)
			return
		}
		var ev event
		if err := json.Unmarshal([]byte(msg.Payload), &ev); err != nil {
			n.d.log.Warn("ebbpostgres: unreadable notification", "payload", msg.Payload, "error", err)
			continue
		}
		n.dispatch(ev)
	}
}

// fail drops a broken connection: listeners' channels close, awaiters wake.
func (n *notifier) fail(conn *pgx.Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn != conn {
		return
	}
	n.conn = nil
	n.cancel()
	for s := range n.subs {
		if s.ch != nil {
			close(s.ch)
			delete(n.subs, s)
		} else {
			poke(s.wake)
		}
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (n *notifier) dispatch(ev event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for s := range n.subs {
		if s.ch == nil {
			if ev.K == "a" || (ev.K == "f" && ev.ID == s.await) {
				poke(s.wake)
			}
			continue
		}
		var out ebbdriver.Event
		switch ev.K {
		case "q":
			if s.queues != nil && !s.queues[ev.Q] {
				continue
			}
			out = ebbdriver.Event{Kind: ebbdriver.EventQueued, Queue: ev.Q}
		case "c":
			out = ebbdriver.Event{Kind: ebbdriver.EventCancel, Queue: ev.Q, TaskID: ev.ID, WorkerID: ev.W}
		case "d":
			if s.worker != "" && s.worker != ev.W {
				continue
			}
			out = ebbdriver.Event{Kind: ebbdriver.EventDrain, WorkerID: ev.W}
		default:
			continue
		}
		select {
		case s.ch <- out:
		default:
			if out.Kind != ebbdriver.EventQueued {
				n.d.log.Warn("ebbpostgres: a listener is not reading; dropped a notification", "kind", ev.K, "task", ev.ID, "worker", ev.W)
			}
		}
	}
}

// listen registers a listener until ctx ends.
func (n *notifier) listen(ctx context.Context, p ebbdriver.ListenParams) (<-chan ebbdriver.Event, error) {
	s := &subscriber{worker: p.WorkerID, ch: make(chan ebbdriver.Event, subBuffer)}
	if len(p.Queues) > 0 {
		s.queues = map[string]bool{}
		for _, q := range p.Queues {
			s.queues[q] = true
		}
	}
	n.mu.Lock()
	if err := n.ensure(ctx); err != nil {
		n.mu.Unlock()
		return nil, err
	}
	n.subs[s] = struct{}{}
	n.mu.Unlock()
	go func() {
		<-ctx.Done()
		n.remove(s)
	}()
	return s.ch, nil
}

func (n *notifier) remove(s *subscriber) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.subs[s]; ok {
		delete(n.subs, s)
		if s.ch != nil {
			close(s.ch)
		}
	}
}

// await registers a wake-up for task id; done unregisters it. The
// listening connection is up when it returns, so a notification sent after
// is not missed while the connection stays healthy.
func (n *notifier) await(ctx context.Context, id string) (<-chan struct{}, func(), error) {
	s := &subscriber{await: id, wake: make(chan struct{}, 1)}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.ensure(ctx); err != nil {
		return nil, nil, err
	}
	n.subs[s] = struct{}{}
	return s.wake, func() { n.remove(s) }, nil
}

// stop closes the connection and every listener.
func (n *notifier) stop() {
	n.mu.Lock()
	n.done = true
	if n.conn != nil {
		n.cancel()
		n.conn = nil
	}
	for s := range n.subs {
		delete(n.subs, s)
		if s.ch != nil {
			close(s.ch)
		} else {
			poke(s.wake)
		}
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// Listen subscribes to the schema's notifications until ctx is done.
func (d *Driver) Listen(ctx context.Context, p ebbdriver.ListenParams) (<-chan ebbdriver.Event, error) {
	ch, err := d.notify.listen(ctx, p)
	if errors.Is(err, errClosed) {
		return nil, err
	}
	if err != nil {
		return nil, d.wrap("listen", err)
	}
	return ch, nil
}

// waker sends the wake-ups of statements that commit on their own (Enqueue
// on the pool, except a lone call, which notifies in its statement) after
// they committed, on a connection of its own, with at
// most one NOTIFY statement in flight: wake-ups that arrive meanwhile are
// coalesced into the next. A NOTIFY takes a database-wide lock from its
// commit until the commit is flushed, so notifying inside every enqueue
// would serialise all enqueuing transactions behind one lock; here they
// commit in parallel and the waker's session, whose only writes are
// notifications, commits with synchronous_commit off (a notification has
// nothing to make durable). Best effort, as every notification: the
// workers' backstop poll covers one lost with a broken connection.
type waker struct {
	d       *Driver
	mu      sync.Mutex
	pending map[string]bool
	running bool
	conn    *pgx.Conn // the loop's; nil until first use or after a failure
}

func (w *waker) wake(queues []string) {
	if len(queues) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		w.pending = map[string]bool{}
	}
	for _, q := range queues {
		w.pending[q] = true
	}
	if !w.running {
		w.running = true
		go w.loop()
	}
}

func (w *waker) loop() {
	for {
		w.mu.Lock()
		if len(w.pending) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		queues := make([]string, 0, len(w.pending))
		for q := range w.pending {
			queues = append(queues, q)
		}
		clear(w.pending)
		w.mu.Unlock()
		if err := w.send(queues); err != nil {
			select {
			case <-w.d.closed:
			default:
				w.d.log.Warn("ebbpostgres: notifying workers of new tasks", "queues", queues, "error", err)
			}
		}
	}
}

func (w *waker) send(queues []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-w.d.closed:
		return errClosed
	default:
	}
	if w.conn == nil || w.conn.IsClosed() {
		cfg := w.d.pool.Config().ConnConfig.Copy()
		cfg.RuntimeParams["synchronous_commit"] = "off"
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		w.conn = conn
	}
	_, err := w.conn.Exec(ctx, `SELECT pg_notify($1, json_build_object('k', 'q', 'q', q)::text) FROM unnest($2::text[]) AS q`,
		w.d.channel, queues)
	if err != nil {
		w.conn.Close(ctx)
		w.conn = nil
	}
	return err
}

// stop closes the waker's connection once its loop is idle.
func (w *waker) stop() {
	for {
		w.mu.Lock()
		if !w.running {
			if w.conn != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				w.conn.Close(ctx)
				cancel()
				w.conn = nil
			}
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}
