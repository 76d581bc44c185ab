package ebbsqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
)

// notifier delivers Listen events and wakes TaskAwait callers.
//
// Changes made through this Driver are announced right after their commit.
// Changes made by other connections (other processes, other Drivers) are
// found by the poller: every PollInterval (backing off to PollIntervalMax when
// quiet, see adaptive intervals below) it reads PRAGMA data_version on a
// dedicated connection, which changes exactly when another connection has
// committed, and only then reads what listeners and awaiters care about:
//
//   - queues.ready_seq, which every transaction that makes tasks Queued
//     advances: a queue whose value grew gets EventQueued;
//   - events after the last seq seen: cancel and drain requests;
//   - the states of awaited tasks.
//
// The poller also sees this Driver's own commits (its connection is not the
// writer); queueSeq and localEvents let it skip what was already announced.
//
// Adaptive intervals: polling every 5 ms costs a few percent of a core per
// idle process, so the interval doubles per poll, up to PollIntervalMax, once
// nothing happened for pollQuietAfter. Something happening is what the poller
// exists for: a queue's ready_seq grew, a cancel or drain request, an awaited
// task ended (found by the poll), or this Driver announcing the same, or a
// TaskAwait or Listen starting here (activity). Commits that announce nothing,
// such as heartbeats and leader renewals every few seconds, change
// data_version but do not count: they would keep an idle poller fast.
//
// Before the query, the poller reads the WAL-index header from the file's
// -shm (see walIndex): when it holds the same bytes as at the last query,
// nothing has committed since and the poll ends without SQL. An idle
// process then costs one pread per poll instead of a statement through
// database/sql and the SQLite engine, whose code spread over the binary was
// most of what an idle worker kept resident.
type notifier struct {
	d *Driver

	mu          sync.Mutex
	listeners   map[*listener]struct{}
	awaiters    map[string]map[chan struct{}]struct{}
	queueSeq    map[string]int64 // highest ready_seq announced per queue
	eventSeq    int64            // highest events.seq the poller has read
	localEvents map[int64]struct{}

	// activity counts this Driver's announcements and new waits; slow is
	// set while the poller is backed off, when activity also signals kick
	// so the poller speeds up at once.
	activity atomic.Uint64
	slow     atomic.Bool
	kick     chan struct{}

	startMu sync.Mutex
	started bool
	conn    *pollConn
	version int64 // last PRAGMA data_version read
	walHdr  walIndexHeader
	walOK   bool // walHdr was read before the query that saw version

	// polls counts polls and queries those that ran SQL: what tests read to
	// see the header check work.
	polls, queries atomic.Uint64
	ctx            context.Context
	cancel         context.CancelFunc
	done           chan struct{}
}

func newNotifier(d *Driver) *notifier {
	ctx, cancel := context.WithCancel(context.Background())
	return &notifier{
		d:           d,
		listeners:   map[*listener]struct{}{},
		awaiters:    map[string]map[chan struct{}]struct{}{},
		queueSeq:    map[string]int64{},
		localEvents: map[int64]struct{}{},
		ctx:         ctx,
		cancel:      cancel,
		done:        make(chan struct{}),
		kick:        make(chan struct{}, 1),
	}
}

// pollQuietAfter is how long the poller keeps PollInterval after the last
// thing that happened before it starts backing off.
const pollQuietAfter = time.Second

// active records that something happened in this process that makes
// changes by other processes likely soon (see notifier).
func (n *notifier) active() {
	n.activity.Add(1)
	if n.slow.Load() {
		signal(n.kick)
	}
}

// start runs the poller if it is not running yet. It returns once the
// poller has read its baseline, so any commit after start returns is seen.
func (n *notifier) start(ctx context.Context) error {
	n.startMu.Lock()
	defer n.startMu.Unlock()
	if n.started {
		return nil
	}
	select {
	case <-n.d.closed:
		return errClosed
	default:
	}
	if err := n.baseline(ctx); err != nil {
		return n.d.wrap("starting the change poller", err)
	}
	n.started = true
	go n.loop()
	return nil
}

// baseline (re)opens the poller's connection and reads the current state
// without announcing it.
func (n *notifier) baseline(ctx context.Context) error {
	if n.conn != nil {
		n.conn.Close()
		n.conn = nil
	}
	conn, err := openPollConn(ctx, n.d.rdb, n.d.path)
	if err != nil {
		return err
	}
	n.walHdr, n.walOK = conn.wal.read()
	v, err := dataVersion(ctx, conn)
	if err != nil {
		conn.Close()
		return err
	}
	seqs, err := readQueueSeqs(ctx, conn)
	if err != nil {
		conn.Close()
		return err
	}
	var maxEvent int64
	if err := conn.maxEvent.QueryRowContext(ctx).Scan(&maxEvent); err != nil {
		conn.Close()
		return err
	}
	n.conn, n.version = conn, v
	n.mu.Lock()
	for q, s := range seqs {
		n.queueSeq[q] = max(n.queueSeq[q], s)
	}
	n.eventSeq = max(n.eventSeq, maxEvent)
	for s := range n.localEvents {
		if s <= n.eventSeq {
			delete(n.localEvents, s)
		}
	}
	n.mu.Unlock()
	return nil
}

func (n *notifier) stop() {
	n.cancel()
	n.startMu.Lock()
	started := n.started
	n.startMu.Unlock()
	if started {
		<-n.done
	}
	n.wakeAll()
}

func (n *notifier) loop() {
	defer close(n.done)
	defer func() {
		if n.conn != nil {
			n.conn.Close()
		}
	}()
	fast, slowest := n.d.cfg.PollInterval, n.d.cfg.PollIntervalMax
	interval := fast
	t := time.NewTimer(interval)
	defer t.Stop()
	lastActive := time.Now()
	seen := n.activity.Load()
	var lastLog time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.kick:
			// Activity here while backed off: poll now, then fast again.
		case <-t.C:
		}
		changed, err := n.poll()
		now := time.Now()
		if a := n.activity.Load(); changed || a != seen {
			seen, lastActive = a, now
			interval = fast
		} else if now.Sub(lastActive) >= pollQuietAfter {
			interval = min(2*interval, slowest)
		}
		n.slow.Store(interval > fast)
		// activity may have moved between the Load and slow.Store: its kick
		// was not sent, so look again at the next fast tick.
		if interval > fast && n.activity.Load() != seen {
			interval = fast
		}
		t.Reset(interval)
		if err == nil || n.ctx.Err() != nil {
			continue
		}
		if time.Since(lastLog) > time.Minute {
			lastLog = time.Now()
			n.d.log.Error("ebbsqlite: change poller failed; notifications from other processes are delayed until it recovers",
				"path", n.d.path, "err", err)
		}
		// A broken connection is replaced; a new baseline may skip the
		// changes made meanwhile, which listeners' backstop polls cover.
		if err := n.baseline(n.ctx); err != nil && n.ctx.Err() == nil {
			n.d.log.Debug("ebbsqlite: change poller reconnect failed", "err", err)
		}
	}
}

// pollConn is the poller's own connection and its statements, prepared
// once: the poller runs them every few hundred milliseconds for the life of
// the process, and compiling a statement costs far more than running it.
type pollConn struct {
	conn                                       *sql.Conn
	version, queues, maxEvent, events, awaited *sql.Stmt
	wal                                        walIndex
}

func openPollConn(ctx context.Context, db *sql.DB, path string) (*pollConn, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	c := &pollConn{conn: conn, wal: openWALIndex(path)}
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&c.version, `PRAGMA data_version`},
		{&c.queues, `SELECT name, ready_seq FROM queues`},
		{&c.maxEvent, `SELECT coalesce(max(seq), 0) FROM events`},
		{&c.events, `SELECT seq, kind, coalesce(queue, ''), coalesce(task_id, ''),
			coalesce(worker_id, '') FROM events WHERE seq > ?1 ORDER BY seq`},
		{&c.awaited, `SELECT j.value FROM json_each(?1) j
			WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = j.value
				AND t.state NOT IN ('succeeded', 'dead', 'cancelled'))`},
	} {
		if *p.st, err = conn.PrepareContext(ctx, p.sql); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close closes the statements, then the connection they are bound to.
func (c *pollConn) Close() {
	for _, st := range []*sql.Stmt{c.version, c.queues, c.maxEvent, c.events, c.awaited} {
		if st != nil {
			st.Close()
		}
	}
	c.wal.close()
	c.conn.Close()
}

// walIndex reads the header of a WAL database's index, the -shm file
// beside it that SQLite maps into every connection. Every commit rewrites
// that header (its change counter, frame count and checksums), and a
// checkpoint that restarts the WAL changes its salts: the header is what
// SQLite itself compares to learn whether the database changed, and what
// PRAGMA data_version reflects. Equal bytes therefore mean no commit. A torn
// read beside a writer can only make the bytes differ, which costs a query.
// Without the file (it appears with WAL mode) every poll queries.
type walIndex struct{ f *os.File }

// walIndexHeader is the first copy of the header: 48 bytes, per SQLite's
// documented WAL-index format.
type walIndexHeader [48]byte

func openWALIndex(dbPath string) walIndex {
	f, err := os.Open(dbPath + "-shm")
	if err != nil {
		return walIndex{}
	}
	return walIndex{f: f}
}

func (w walIndex) read() (h walIndexHeader, ok bool) {
	if w.f == nil {
		return h, false
	}
	n, err := w.f.ReadAt(h[:], 0)
	return h, err == nil && n == len(h)
}

func (w walIndex) close() {
	if w.f != nil {
		w.f.Close()
	}
}

func dataVersion(ctx context.Context, c *pollConn) (int64, error) {
	var v int64
	err := c.version.QueryRowContext(ctx).Scan(&v)
	return v, err
}

func readQueueSeqs(ctx context.Context, c *pollConn) (map[string]int64, error) {
	rows, err := c.queues.QueryContext(ctx)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var q string
		var s int64
		if err := rows.Scan(&q, &s); err != nil {
			return nil, err
		}
		out[q] = s
	}
	return out, rows.Err()
}

// poll checks for commits by other connections and announces them. changed
// reports whether it found anything listeners or awaiters care about (even
// if it had been announced already).
func (n *notifier) poll() (changed bool, err error) {
	ctx := n.ctx
	if n.conn == nil {
		return false, n.baseline(ctx)
	}
	// The header is read before the query: a commit landing between the
	// two is in the query's answer and changes the next header, so it is
	// never skipped.
	n.polls.Add(1)
	hdr, hdrOK := n.conn.wal.read()
	if hdrOK && n.walOK && hdr == n.walHdr {
		return false, nil
	}
	n.queries.Add(1)
	v, err := dataVersion(ctx, n.conn)
	if err != nil {
		return false, err
	}
	if v == n.version {
		n.walHdr, n.walOK = hdr, hdrOK
		return false, nil
	}
	n.mu.Lock()
	listening, awaited := len(n.listeners) > 0, len(n.awaiters) > 0
	n.mu.Unlock()
	if listening {
		c, err := n.pollQueues(ctx)
		if err != nil {
			return false, err
		}
		changed = changed || c
		if c, err = n.pollEvents(ctx); err != nil {
			return false, err
		}
		changed = changed || c
	}
	if awaited {
		c, err := n.pollAwaited(ctx)
		if err != nil {
			return false, err
		}
		changed = changed || c
	}
	n.version = v
	n.walHdr, n.walOK = hdr, hdrOK
	return changed, nil
}

// pollQueues announces queues whose ready_seq grew; changed reports whether
// any grew that this Driver had not announced itself (those count as
// activity already).
func (n *notifier) pollQueues(ctx context.Context) (changed bool, err error) {
	seqs, err := readQueueSeqs(ctx, n.conn)
	if err != nil {
		return false, fmt.Errorf("reading queue sequence numbers: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for q, s := range seqs {
		if s > n.queueSeq[q] {
			n.queueSeq[q] = s
			n.dispatchLocked(ebbdriver.Event{Kind: ebbdriver.EventQueued, Queue: q})
			changed = true
		}
	}
	return changed, nil
}

// pollEvents announces new cancel and drain requests; changed reports
// whether there were any.
func (n *notifier) pollEvents(ctx context.Context) (changed bool, err error) {
	n.mu.Lock()
	after := n.eventSeq
	n.mu.Unlock()
	rows, err := n.conn.events.QueryContext(ctx, after)
	if err != nil {
		return false, fmt.Errorf("reading events: %w", err)
	}
	defer rows.Close()
	var evs []pendingEvent
	for rows.Next() {
		var pe pendingEvent
		var kind string
		if err := rows.Scan(&pe.seq, &kind, &pe.Queue, &pe.TaskID, &pe.WorkerID); err != nil {
			return false, fmt.Errorf("reading events: %w", err)
		}
		switch kind {
		case "cancel":
			pe.Kind = ebbdriver.EventCancel
		case "drain":
			pe.Kind = ebbdriver.EventDrain
		default:
			continue
		}
		evs = append(evs, pe)
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("reading events: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, pe := range evs {
		if pe.seq <= n.eventSeq {
			continue
		}
		n.eventSeq = pe.seq
		changed = true
		if _, ok := n.localEvents[pe.seq]; ok {
			continue
		}
		n.dispatchLocked(pe.Event)
	}
	for s := range n.localEvents {
		if s <= n.eventSeq {
			delete(n.localEvents, s)
		}
	}
	return changed, nil
}

// pollAwaited wakes awaiters whose task finished or disappeared; changed
// reports whether there were any.
func (n *notifier) pollAwaited(ctx context.Context) (changed bool, err error) {
	n.mu.Lock()
	ids := make([]string, 0, len(n.awaiters))
	for id := range n.awaiters {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	for chunk := range slices.Chunk(ids, 500) {
		b, _ := json.Marshal(chunk)
		rows, err := n.conn.awaited.QueryContext(ctx, string(b))
		if err != nil {
			return false, fmt.Errorf("checking awaited tasks: %w", err)
		}
		var done []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return false, fmt.Errorf("checking awaited tasks: %w", err)
			}
			done = append(done, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("checking awaited tasks: %w", err)
		}
		n.finished(done)
		changed = changed || len(done) > 0
	}
	return changed, nil
}

// queued announces queues whose ready_seq this Driver advanced (the values
// are the new ready_seq).
func (n *notifier) queued(ready map[string]int64) {
	if len(ready) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for q, s := range ready {
		if s <= n.queueSeq[q] {
			continue // the poller got there first
		}
		n.queueSeq[q] = s
		n.dispatchLocked(ebbdriver.Event{Kind: ebbdriver.EventQueued, Queue: q})
		n.active()
	}
}

// pendingEvent is an event with its events.seq.
type pendingEvent struct {
	ebbdriver.Event
	seq int64
}

// events announces cancel and drain requests this Driver committed.
func (n *notifier) events(evs []pendingEvent) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.listeners) == 0 {
		return // nobody to tell, and nothing for the poller to skip
	}
	for _, pe := range evs {
		if pe.seq <= n.eventSeq {
			continue // the poller got there first
		}
		n.localEvents[pe.seq] = struct{}{}
		n.dispatchLocked(pe.Event)
		n.active()
	}
}

func (n *notifier) dispatchLocked(ev ebbdriver.Event) {
	for l := range n.listeners {
		if l.wants(ev) {
			l.push(ev)
		}
	}
}

// await registers interest in a task finishing. done must be called.
func (n *notifier) await(id string) (wake <-chan struct{}, done func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	set := n.awaiters[id]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		n.awaiters[id] = set
	}
	set[ch] = struct{}{}
	n.mu.Unlock()
	n.active()
	return ch, func() {
		n.mu.Lock()
		delete(set, ch)
		if len(set) == 0 && len(n.awaiters[id]) == 0 {
			delete(n.awaiters, id)
		}
		n.mu.Unlock()
	}
}

// finished wakes the awaiters of these tasks.
func (n *notifier) finished(ids []string) {
	if len(ids) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.awaiters) == 0 {
		return
	}
	for _, id := range ids {
		for ch := range n.awaiters[id] {
			signal(ch)
			n.active()
		}
	}
}

// wakeAll wakes every awaiter, after deletions that may have removed their
// tasks.
func (n *notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, set := range n.awaiters {
		for ch := range set {
			signal(ch)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// listener is one Listen call. Events are queued in pending (EventQueued
// collapsed per queue: one pending wake-up says all there is to say) and
// handed to the caller's channel by the listener's own goroutine, so a slow
// reader delays only itself and never loses a cancel or drain.
type listener struct {
	queues   map[string]bool // nil: all
	workerID string

	mu            sync.Mutex
	pending       []ebbdriver.Event
	pendingQueued map[string]bool
	wake          chan struct{}
	out           chan ebbdriver.Event
}

func (l *listener) wants(ev ebbdriver.Event) bool {
	switch ev.Kind {
	case ebbdriver.EventQueued:
		return l.queues == nil || l.queues[ev.Queue]
	case ebbdriver.EventCancel:
		// A worker hears about the tasks it holds; a listener that names no
		// worker (a monitor) about every task of its queues.
		if l.workerID != "" {
			return ev.WorkerID == l.workerID
		}
		return l.queues == nil || l.queues[ev.Queue]
	case ebbdriver.EventDrain:
		return l.workerID != "" && ev.WorkerID == l.workerID
	}
	return false
}

func (l *listener) push(ev ebbdriver.Event) {
	l.mu.Lock()
	if ev.Kind == ebbdriver.EventQueued {
		if l.pendingQueued[ev.Queue] {
			l.mu.Unlock()
			return
		}
		l.pendingQueued[ev.Queue] = true
	}
	l.pending = append(l.pending, ev)
	l.mu.Unlock()
	signal(l.wake)
}

func (l *listener) run(ctx context.Context, closed <-chan struct{}, n *notifier) {
	defer func() {
		n.mu.Lock()
		delete(n.listeners, l)
		n.mu.Unlock()
		close(l.out)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-closed:
			return
		case <-l.wake:
		}
		l.mu.Lock()
		batch := l.pending
		l.pending = nil
		clear(l.pendingQueued)
		l.mu.Unlock()
		for _, ev := range batch {
			select {
			case l.out <- ev:
			case <-ctx.Done():
				return
			case <-closed:
				return
			}
		}
	}
}

// Listen subscribes to queued, cancel and drain notifications until ctx is
// done or the Driver is closed, when the channel is closed.
func (d *Driver) Listen(ctx context.Context, p ebbdriver.ListenParams) (<-chan ebbdriver.Event, error) {
	select {
	case <-d.closed:
		return nil, fmt.Errorf("ebbsqlite: listen: %w", errClosed)
	default:
	}
	if err := d.notify.start(ctx); err != nil {
		return nil, err
	}
	l := &listener{
		workerID:      p.WorkerID,
		pendingQueued: map[string]bool{},
		wake:          make(chan struct{}, 1),
		out:           make(chan ebbdriver.Event, 16),
	}
	if len(p.Queues) > 0 {
		l.queues = map[string]bool{}
		for _, q := range p.Queues {
			l.queues[q] = true
		}
	}
	n := d.notify
	n.mu.Lock()
	n.listeners[l] = struct{}{}
	n.mu.Unlock()
	n.active()
	go l.run(ctx, d.closed, n)
	return l.out, nil
}
