package celery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of MonitorConfig.
const (
	// BackstopDefault is how old cached counts may get while keyspace
	// notifications watch the queue keys: they are reread on any change,
	// so the poll only covers a notification lost to a reconnect.
	BackstopDefault = 30 * time.Second
	// enableEventsEvery repeats the enable_events broadcast while workers
	// are alive (Flower: every 5 s), for workers that started without -E.
	enableEventsEvery = 10 * time.Second
	// settingsTimeout bounds a `conf` call to one worker.
	settingsTimeout = 2 * time.Second
)

// MonitorConfig configures a Monitor.
type MonitorConfig struct {
	Broker *Broker
	// Queues are the Kombu queue names the pool's workers consume.
	Queues []string
	// Backstop: see BackstopDefault. It applies only while keyspace
	// notifications work; otherwise counts are as fresh as the caller asks.
	Backstop time.Duration
	// EnableEvents broadcasts enable_events when a worker comes online and
	// every 10 s while workers live.
	EnableEvents bool
	// OnWork is called when a message is pushed onto one of the queues
	// (the wake from zero) and when the event stream reconnects.
	OnWork func()
	Logger *slog.Logger
}

// Monitor watches one pool's Celery queues and fleet: counts from the
// broker, workers and tasks from events, wake-ups from keyspace
// notifications.
type Monitor struct {
	cfg   MonitorConfig
	b     *Broker
	state *State
	log   *slog.Logger

	mu         sync.Mutex
	watching   bool   // keyspace notifications are on and subscribed
	watchNote  string // why not, for the pool's status
	dirty      bool   // a watched key changed since the last read
	readAt     time.Time
	last       Counts
	headTag    map[string]string
	headSince  map[string]time.Time
	firstPush  map[string]time.Time // first push into a queue last read empty
	lastEnable time.Time
	subscribed bool                 // every channel's subscription is confirmed
	asked      map[string]time.Time // nodename → last conf call

	wg        sync.WaitGroup // Retire's delayed shutdowns
	closing   chan struct{}
	closeOnce sync.Once
}

// Counts are a pool's Celery queues as the scaler sees them.
type Counts struct {
	Queues []QueueCount
	// OldestSeen is, per queue, when ebb first saw the current head
	// message (see Monitor.Counts for how exact it is).
	OldestSeen map[string]time.Time
	// Unacked are the messages of these queues in the unacked hash.
	Unacked []Unacked
	// InFlight counts the tasks taken off the queues and not finished:
	// those live workers hold by their events, and the unacked messages
	// (acks_late) of workers that are gone, which Kombu restores after the
	// visibility timeout.
	InFlight int64
	ReadAt   time.Time
}

// NewMonitor returns a monitor; Run starts it.
func NewMonitor(cfg MonitorConfig) *Monitor {
	if cfg.Backstop <= 0 {
		cfg.Backstop = BackstopDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnWork == nil {
		cfg.OnWork = func() {}
	}
	return &Monitor{cfg: cfg, b: cfg.Broker, state: NewState(0), log: cfg.Logger, dirty: true,
		headTag: map[string]string{}, headSince: map[string]time.Time{}, firstPush: map[string]time.Time{},
		asked: map[string]time.Time{}, closing: make(chan struct{}), watchNote: "starting"}
}

// State is the fleet as its events describe it.
func (m *Monitor) State() *State { return m.state }

// Broker is the monitor's broker.
func (m *Monitor) Broker() *Broker { return m.b }

// WakeStatus says how the monitor learns of new messages, for the pool's
// status.
func (m *Monitor) WakeStatus() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watching {
		return "woken by keyspace notifications; counts reread on change, at least every " + m.cfg.Backstop.String()
	}
	return "polling the queue lengths (keyspace notifications unavailable: " + m.watchNote + ")"
}

// Counts returns the pool's counts, read again when a watched key changed
// since the last read, when they are older than the backstop, or — when
// keyspace notifications are unavailable — when they are older than maxAge
// (0: read now).
//
// The oldest-waiting age is measured, since Celery messages carry no
// enqueue time: for the first message pushed into an empty queue it is the
// time of its keyspace notification (exact to the notification's latency);
// for a message that reaches the head behind others it is when ebb first
// read it there, a lower bound that is short by at most the time it waited
// behind the previous head.
func (m *Monitor) Counts(ctx context.Context, now time.Time, maxAge time.Duration) (Counts, error) {
	m.mu.Lock()
	fresh := !m.readAt.IsZero() && !m.dirty
	if fresh && m.watching {
		fresh = now.Sub(m.readAt) < m.cfg.Backstop
	} else if fresh {
		fresh = maxAge > 0 && now.Sub(m.readAt) <= maxAge
	}
	if fresh {
		c := m.last
		m.mu.Unlock()
		c.InFlight = m.inFlight(c.Unacked, now)
		return c, nil
	}
	m.dirty = false
	m.mu.Unlock()
	qs, unacked, err := m.b.Counts(ctx, m.cfg.Queues)
	if err != nil {
		m.mu.Lock()
		m.dirty = true
		m.mu.Unlock()
		return Counts{}, err
	}
	m.mu.Lock()
	c := Counts{Queues: qs, Unacked: unacked, OldestSeen: map[string]time.Time{}, ReadAt: now}
	for _, q := range qs {
		prev := m.headTag[q.Name]
		switch {
		case q.HeadTag == "" && q.Queued == 0:
			delete(m.headTag, q.Name)
			delete(m.headSince, q.Name)
			delete(m.firstPush, q.Name)
		case q.HeadTag != prev:
			since := now
			if fp, ok := m.firstPush[q.Name]; ok && prev == "" && fp.Before(now) {
				since = fp
			}
			delete(m.firstPush, q.Name)
			m.headTag[q.Name], m.headSince[q.Name] = q.HeadTag, since
		}
		if t, ok := m.headSince[q.Name]; ok {
			c.OldestSeen[q.Name] = t
		}
	}
	m.readAt, m.last = now, c
	m.mu.Unlock()
	c.InFlight = m.inFlight(unacked, now)
	return c, nil
}

func (m *Monitor) inFlight(unacked []Unacked, now time.Time) int64 {
	ids := m.state.HeldBy(now)
	n := int64(len(ids))
	for _, u := range unacked {
		if _, held := ids[u.TaskID]; !held {
			n++
		}
	}
	return n
}

// consumerSettle is how long a worker keeps a BRPOP open on its queues
// after cancel_consumer: Kombu blocks in BRPOP for 1 s at a time.
const consumerSettle = 1500 * time.Millisecond

// Retire stops one worker (by nodename) without losing a message. A plain
// warm shutdown is not enough on Redis: the worker closes its connection
// while a BRPOP is still open, and a message Redis pops into it in that
// moment is gone (Kombu neither reads the reply nor records the message).
// So Retire first sends cancel_consumer for each of the pool's queues and
// waits for the worker's reply (a worker that just came online may not
// listen yet, and a lost cancel would leave the race open), waits out the
// BRPOP Kombu then still reads (a message it brings is handed back, or run
// if the consumer still had it), and only then asks for the warm shutdown,
// which finishes anything running. It returns at once; the worker counts
// as shutting down from then on, and as idle again if it never confirmed
// the cancel.
func (m *Monitor) Retire(ctx context.Context, nodename string, now time.Time) error {
	m.state.markShutdown(nodename, now)
	m.wg.Go(func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*settingsTimeout+consumerSettle+5*time.Second)
		defer cancel()
		for _, q := range m.cfg.Queues {
			if _, err := m.b.Call(sctx, nodename, "cancel_consumer", map[string]any{"queue": q}, settingsTimeout); err != nil {
				m.log.Info("celery: a worker did not confirm cancel_consumer; not stopping it now", "worker", nodename, "error", err)
				m.state.markShutdown(nodename, time.Time{})
				return
			}
		}
		t := time.NewTimer(consumerSettle)
		defer t.Stop()
		select {
		case <-t.C:
		case <-m.closing:
		}
		if err := m.b.Shutdown(sctx, nodename); err != nil {
			m.log.Warn("celery: shutdown request failed; the worker no longer consumes and stays up idle", "worker", nodename, "error", err)
		}
	})
	return nil
}

// StopConsuming makes one worker (by nodename) take no new message while it
// stays up, for platforms that restart a worker that exits (an ECS
// service, a Deployment): it sends cancel_consumer for each of the pool's
// queues, waits for the worker's replies, and then waits out the BRPOP
// Kombu may still have open (see Retire). It returns at once; the worker's
// CancelAt is set from now, and Cancelled once all of that is done (then
// OnWork is called, so the pool can hand the worker to its platform).
// A worker that does not confirm consumes as before: CancelAt is cleared.
func (m *Monitor) StopConsuming(ctx context.Context, nodename string, now time.Time) error {
	m.state.markCancel(nodename, now, false)
	m.wg.Go(func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*settingsTimeout+5*time.Second)
		defer cancel()
		for _, q := range m.cfg.Queues {
			if _, err := m.b.Call(sctx, nodename, "cancel_consumer", map[string]any{"queue": q}, settingsTimeout); err != nil {
				m.log.Info("celery: a worker did not confirm cancel_consumer; it keeps consuming", "worker", nodename, "error", err)
				m.state.markCancel(nodename, time.Time{}, false)
				m.cfg.OnWork()
				return
			}
		}
		t := time.NewTimer(consumerSettle)
		defer t.Stop()
		select {
		case <-t.C:
		case <-m.closing:
			return
		}
		m.state.markCancel(nodename, now, true)
		m.cfg.OnWork()
	})
	return nil
}

// ResumeConsuming undoes StopConsuming for workers whose platform has not
// retired them yet (add_consumer for each queue, not waiting for replies),
// so that a control plane that stops leaves no worker up that takes
// nothing and that its successor would not know to retire.
func (m *Monitor) ResumeConsuming(ctx context.Context, nodenames []string) {
	for _, n := range nodenames {
		for _, q := range m.cfg.Queues {
			if err := m.b.Broadcast(ctx, "add_consumer", map[string]any{"queue": q}, n); err != nil {
				m.log.Warn("celery: add_consumer failed; the worker stays up taking nothing until it is retired", "worker", n, "error", err)
			}
		}
		m.state.markCancel(n, time.Time{}, false)
	}
}

// RetireAll retires the workers as Retire does, all at once, and returns
// when their shutdowns have been sent.
func (m *Monitor) RetireAll(ctx context.Context, nodenames []string, now time.Time) {
	var sent []string
	for _, n := range nodenames {
		ok := true
		for _, q := range m.cfg.Queues {
			if err := m.b.Broadcast(ctx, "cancel_consumer", map[string]any{"queue": q}, n); err != nil {
				ok = false
			}
		}
		if ok {
			m.state.markShutdown(n, now)
			sent = append(sent, n)
		}
	}
	if len(sent) == 0 {
		return
	}
	t := time.NewTimer(consumerSettle)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	for _, n := range sent {
		if err := m.b.Shutdown(context.WithoutCancel(ctx), n); err != nil {
			m.log.Warn("celery: shutdown request failed", "worker", n, "error", err)
		}
	}
}

// Close waits for shutdown requests under way and closes the broker's
// connections.
func (m *Monitor) Close() error {
	m.closeOnce.Do(func() { close(m.closing) })
	m.wg.Wait()
	return m.b.Close()
}

// Warnings lists what the live workers' observed settings make unsafe.
func (m *Monitor) Warnings(now time.Time) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range m.state.Workers(now) {
		if !w.Alive || w.Settings == nil {
			continue
		}
		s := w.Settings
		var msg string
		switch {
		case !s.AcksLate && s.PrefetchMultiplier > 1:
			msg = fmt.Sprintf("task_acks_late is off and worker_prefetch_multiplier is %d: a worker that is killed loses its running task and the messages it prefetched; set task_acks_late=True and worker_prefetch_multiplier=1", s.PrefetchMultiplier)
		case !s.AcksLate:
			msg = "task_acks_late is off: a worker that is killed (out of memory, stopped past its grace) loses the task it runs; set task_acks_late=True"
		case s.PrefetchMultiplier > 1:
			msg = fmt.Sprintf("worker_prefetch_multiplier is %d: each worker holds up to that many messages per process that no other worker can take, so busy workers hide backlog and idle ones wait; set it to 1", s.PrefetchMultiplier)
		}
		if msg != "" && !seen[msg] {
			seen[msg] = true
			out = append(out, w.Hostname+": "+msg)
		}
	}
	return out
}

// Run watches until ctx ends: it turns on keyspace notifications for list
// and hash commands if the server allows CONFIG SET (merging with flags
// already set), subscribes to the fleet's events and to the queue keys'
// notifications, and keeps the event state.
func (m *Monitor) Run(ctx context.Context) error {
	watch := m.enableNotifications(ctx)
	db := strconv.Itoa(m.b.db)
	events := m.b.fanoutChannel("celeryev", "*")
	ps := m.b.rdb.PSubscribe(ctx, events)
	defer ps.Close()
	keyspace := "__keyspace@" + db + "__:"
	var chans []string
	queueOf := map[string]string{}
	if watch {
		for _, q := range m.cfg.Queues {
			for _, k := range priorityKeys(q) {
				ch := keyspace + m.b.key(k)
				chans = append(chans, ch)
				queueOf[ch] = q
			}
		}
		chans = append(chans, keyspace+m.b.key(unackedKey))
		if err := ps.Subscribe(ctx, chans...); err != nil {
			watch = false
			m.setWatch(false, "subscribing to the queue keys: "+err.Error())
		}
	}
	m.mu.Lock()
	m.watching = watch
	m.mu.Unlock()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	msgs := make(chan any, 256)
	go func() {
		defer close(msgs)
		for {
			msg, err := ps.Receive(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				m.markDirty()
				time.Sleep(100 * time.Millisecond)
				continue
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	confirmed := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			m.housekeep(ctx)
		case msg, ok := <-msgs:
			if !ok {
				return nil
			}
			switch msg := msg.(type) {
			case *redis.Subscription:
				// A (re)subscription: whatever happened meanwhile is unknown.
				m.markDirty()
				m.cfg.OnWork()
				if msg.Count == len(chans)+1 {
					m.mu.Lock()
					m.subscribed = true
					m.mu.Unlock()
					// After a reconnect the server may have restarted and
					// forgotten notify-keyspace-events.
					if confirmed++; confirmed > 1 && watch {
						m.enableNotifications(ctx)
					}
				}
			case *redis.Message:
				if q, ok := queueOf[msg.Channel]; ok || msg.Channel == keyspace+m.b.key(unackedKey) {
					m.onKeyspace(q, msg.Payload)
					continue
				}
				m.onEvent(ctx, msg.Payload)
			}
		}
	}
}

func (m *Monitor) setWatch(on bool, note string) {
	m.mu.Lock()
	m.watching, m.watchNote = on, note
	m.mu.Unlock()
}

func (m *Monitor) markDirty() {
	m.mu.Lock()
	m.dirty = true
	m.mu.Unlock()
}

// enableNotifications makes sure notify-keyspace-events has K (keyspace
// channels), l (list commands) and h (hash commands).
func (m *Monitor) enableNotifications(ctx context.Context) bool {
	cur, err := m.b.rdb.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		m.setWatch(false, "CONFIG GET notify-keyspace-events refused: "+err.Error()+"; set notify-keyspace-events to include Klh on the server")
		m.log.Warn("celery: cannot read notify-keyspace-events; polling queue lengths instead", "error", err)
		return false
	}
	flags := cur["notify-keyspace-events"]
	want := flags
	for _, f := range []string{"K", "l", "h"} {
		if !strings.Contains(want, f) && !(f != "K" && strings.Contains(want, "A")) {
			want += f
		}
	}
	if want != flags {
		if err := m.b.rdb.ConfigSet(ctx, "notify-keyspace-events", want).Err(); err != nil {
			m.setWatch(false, "CONFIG SET notify-keyspace-events "+want+" refused: "+err.Error()+"; set it on the server")
			m.log.Warn("celery: cannot enable keyspace notifications; polling queue lengths instead", "error", err)
			return false
		}
		m.log.Info("celery: enabled keyspace notifications for the queue keys", "notify-keyspace-events", want)
	}
	m.setWatch(true, "")
	return true
}

func (m *Monitor) onKeyspace(queue, op string) {
	push := false
	switch op {
	case "lpush", "rpush", "lpushx", "rpushx", "linsert", "lmove", "rpoplpush":
		push = queue != ""
	}
	m.mu.Lock()
	m.dirty = true
	if push {
		if _, ok := m.firstPush[queue]; !ok && m.headTag[queue] == "" {
			m.firstPush[queue] = time.Now()
		}
	}
	m.mu.Unlock()
	if push {
		m.cfg.OnWork()
	}
}

// onEvent decodes one celeryev message: one event, or (task.multi) a list.
func (m *Monitor) onEvent(ctx context.Context, payload string) {
	var e envelope
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		return
	}
	body, err := e.payload()
	if err != nil {
		return
	}
	var evs []event
	if len(body) > 0 && body[0] == '[' {
		_ = json.Unmarshal(body, &evs)
	} else {
		var ev event
		if json.Unmarshal(body, &ev) == nil {
			evs = append(evs, ev)
		}
	}
	now := time.Now()
	for _, ev := range evs {
		m.state.apply(ev, now)
		switch ev.Type {
		case "worker-online":
			m.onWorkerOnline(ctx, ev.Hostname)
		case "worker-offline":
			m.cfg.OnWork() // reconcile now: the fleet shrank
		}
	}
}

func (m *Monitor) onWorkerOnline(ctx context.Context, nodename string) {
	if m.cfg.EnableEvents {
		if err := m.b.EnableEvents(ctx); err != nil {
			m.log.Warn("celery: enable_events broadcast failed", "error", err)
		}
		m.mu.Lock()
		m.lastEnable = time.Now()
		m.mu.Unlock()
	}
	m.askSettings(ctx, nodename)
	m.cfg.OnWork()
}

// askSettings reads a worker's settings in the background, at most every
// 10 s per worker (a worker answers only once its mailbox is up).
func (m *Monitor) askSettings(ctx context.Context, nodename string) {
	m.mu.Lock()
	if time.Since(m.asked[nodename]) < 10*time.Second {
		m.mu.Unlock()
		return
	}
	m.asked[nodename] = time.Now()
	m.mu.Unlock()
	go func() {
		s, err := m.b.Settings(ctx, nodename, settingsTimeout)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Info("celery: could not read a worker's settings", "worker", nodename, "error", err)
			}
			return
		}
		m.state.setSettings(nodename, s)
	}()
}

// housekeep repeats enable_events while workers live and forgets workers
// gone for an hour.
func (m *Monitor) housekeep(ctx context.Context) {
	now := time.Now()
	m.state.forget(now, time.Hour)
	alive := false
	for _, w := range m.state.Workers(now) {
		alive = alive || w.Alive
		if w.Alive && w.Settings == nil && w.ShutdownAt.IsZero() {
			m.askSettings(ctx, w.Hostname)
		}
	}
	m.mu.Lock()
	due := m.cfg.EnableEvents && alive && now.Sub(m.lastEnable) >= enableEventsEvery
	if due {
		m.lastEnable = now
	}
	m.mu.Unlock()
	if due {
		_ = m.b.EnableEvents(ctx)
	}
}

// watchingNow reports whether keyspace notifications are on and every
// subscription is confirmed.
func (m *Monitor) watchingNow() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.watching && m.subscribed
}
