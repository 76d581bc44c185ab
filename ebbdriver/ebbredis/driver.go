package ebbredis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/internal/groupcommit"
)

// PrefixDefault is the key prefix when Config.Prefix is empty.
const PrefixDefault = "ebb"

// Config configures a Driver. The zero value (or nil) is valid.
type Config struct {
	// Prefix starts every key and channel name, so several ebb deployments
	// can share one Redis. Default PrefixDefault. It must not contain braces:
	// they would change the Redis Cluster hash tag.
	Prefix string

	// WaitReplicas, when above 0, makes Enqueue durable across a failover:
	// after its script stored the tasks, it sends WAIT WaitReplicas
	// WaitTimeout on the same connection, and acknowledges the tasks only
	// when that many replicas of the master confirmed the write; otherwise
	// it returns an error wrapping ErrNotReplicated (the tasks are stored
	// on the master and may or may not survive its failure). Redis
	// replication is asynchronous, so without it an enqueue acknowledged
	// just before its master dies can vanish with the master. Completions
	// and claims are not waited for: losing one makes a task run again, it
	// never loses it. Needs a *redis.Client or *redis.ClusterClient. The
	// URL parameter wait_replicas sets it. Default 0 (no wait).
	WaitReplicas int
	// WaitTimeout bounds each WAIT. Default 1 s; keep it below the client's
	// read timeout (3 s by default). The URL parameter wait_timeout sets it.
	WaitTimeout time.Duration
}

// Driver is the Redis broker driver. It is safe for concurrent use.
type Driver struct {
	rdb    redis.UniversalClient
	owned  bool
	prefix string

	chCtl  string // control channel
	chDone string // terminal-state channel for TaskAwait

	queues sync.Map // queue name → *queueKeys
	known  sync.Map // queue name → struct{}: in P:queues as far as we know
	qset   queueSet // cached P:queues for QueueStats

	hub *awaitHub

	enqueueGroup *groupcommit.Group[*enqueueCall]

	mu        sync.Mutex
	closed    bool
	listeners map[*listener]struct{}

	waitReplicas int
	waitTimeout  time.Duration

	checkKeys bool // run the scripts under keyCheck (tests)
}

var _ ebbdriver.Driver = (*Driver)(nil)

// New returns a driver using client. The caller keeps owning client: Close
// does not close it.
func New(client redis.UniversalClient, config *Config) (*Driver, error) {
	if client == nil {
		return nil, errors.New("ebbredis: New needs a Redis client, got nil")
	}
	prefix := PrefixDefault
	if config != nil && config.Prefix != "" {
		prefix = config.Prefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("ebbredis: key prefix %q contains a brace; braces would change the Redis Cluster hash tag of every key, pick a prefix without them", prefix)
	}
	d := &Driver{
		rdb:       client,
		prefix:    prefix,
		chCtl:     prefix + ":ch:ctl",
		chDone:    prefix + ":ch:done",
		listeners: make(map[*listener]struct{}),
	}
	if config != nil && config.WaitReplicas > 0 {
		switch client.(type) {
		case *redis.Client, *redis.ClusterClient:
		default:
			return nil, fmt.Errorf("ebbredis: WaitReplicas needs a *redis.Client or *redis.ClusterClient, got %T", client)
		}
		d.waitReplicas = config.WaitReplicas
		d.waitTimeout = config.WaitTimeout
		if d.waitTimeout <= 0 {
			d.waitTimeout = time.Second
		}
	}
	d.hub = newAwaitHub(d)
	d.enqueueGroup = groupcommit.New(enqueueGroupCalls, d.commitEnqueues)
	return d, nil
}

// Open connects to the Redis or Redis Cluster at url (see URLOptions for
// the forms: redis://host:port/db, rediss:// for TLS,
// redis+cluster://host:port,host:port for a cluster), checks that it
// answers and returns a driver that owns the connection: Close closes it.
// The URL's wait_replicas and wait_timeout fill the Config fields left zero.
func Open(ctx context.Context, url string, config *Config) (*Driver, error) {
	o, err := ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("ebbredis: bad broker URL %q: %w; use redis://host:port/db, rediss://host:port/db or redis+cluster://host:port,host:port", redactURL(url), err)
	}
	cfg := Config{}
	if config != nil {
		cfg = *config
	}
	if cfg.WaitReplicas == 0 {
		cfg.WaitReplicas = o.WaitReplicas
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = o.WaitTimeout
	}
	client := o.NewClient()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("ebbredis: cannot reach Redis at %s: %w; is redis-server running? start it or fix --broker/EBB_BROKER", strings.Join(o.Addrs(), ","), err)
	}
	d, err := New(client, &cfg)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	d.owned = true
	return d, nil
}

// redactURL hides a password so it never lands in logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// Name implements ebbdriver.Driver.
func (d *Driver) Name() string { return "redis" }

// Close stops the driver's listeners and, when the driver was made by Open,
// closes its Redis client.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	ls := make([]*listener, 0, len(d.listeners))
	for l := range d.listeners {
		ls = append(ls, l)
	}
	d.mu.Unlock()
	for _, l := range ls {
		l.stop()
	}
	d.hub.close()
	if d.owned {
		return d.rdb.Close()
	}
	return nil
}

// queueKeys are the key names of one queue, built once per queue.
type queueKeys struct {
	name      string
	prefix    string // P:{q}:
	channel   string // P:ch:q:<q>
	ready     [3]string
	scheduled string
	leases    string
	dead      string
	done      string // Succeeded and Cancelled tasks kept for their retention
	stats     string
	waiters   string
	tasks     string // task id → record
	uniq      string // unique key → holder id
	uniqexp   string // unique key → expiry µs (keys with a TTL)

	// Key lists in the order the scripts declare them.
	kEnqueue  []string
	kOne      [4][]string // enqueueOne's keys for each set (ready:1…3, scheduled)
	kFetch    []string
	kComplete []string
	kRescue   []string
	kPromote  []string
	kDeadMove []string
	kStats    []string
}

func (d *Driver) keys(queue string) *queueKeys {
	if v, ok := d.queues.Load(queue); ok {
		return v.(*queueKeys)
	}
	p := d.prefix + ":{" + queue + "}:"
	k := &queueKeys{
		name:      queue,
		prefix:    p,
		channel:   d.prefix + ":ch:q:" + queue,
		ready:     [3]string{p + "ready:1", p + "ready:2", p + "ready:3"},
		scheduled: p + "scheduled",
		leases:    p + "leases",
		dead:      p + "dead",
		done:      p + "done",
		stats:     p + "stats",
		waiters:   p + "waiters",
		tasks:     p + "tasks",
		uniq:      p + "uniq",
		uniqexp:   p + "uniqexp",
	}
	r := k.ready
	k.kEnqueue = []string{r[0], r[1], r[2], k.scheduled, k.stats, k.tasks, k.uniq, k.uniqexp}
	for i, set := range []string{r[0], r[1], r[2], k.scheduled} {
		k.kOne[i] = []string{set, k.stats, k.tasks}
	}
	k.kFetch = []string{r[0], r[1], r[2], k.scheduled, k.leases, k.tasks}
	k.kComplete = []string{r[0], r[1], r[2], k.scheduled, k.leases, k.dead, k.stats, k.waiters, k.done, k.tasks, k.uniq, k.uniqexp}
	k.kRescue = []string{r[0], r[1], r[2], k.leases, k.dead, k.stats, k.waiters, k.tasks, k.uniq, k.uniqexp}
	k.kPromote = []string{r[0], r[1], r[2], k.scheduled, k.tasks}
	k.kDeadMove = []string{r[0], r[1], r[2], k.dead, k.tasks, k.uniq}
	k.kStats = []string{r[0], r[1], r[2], k.scheduled, k.leases, k.dead, k.stats}
	v, _ := d.queues.LoadOrStore(queue, k)
	return v.(*queueKeys)
}

// knownQueue reports whether this Driver already sent the queue's SADD to
// P:queues or found it there.
func (d *Driver) knownQueue(queue string) bool {
	_, ok := d.known.Load(queue)
	return ok
}

// queueSetTTL is how long QueueStats reuses its copy of P:queues. Queues
// this Driver enqueues into, or hears a notification about, join the copy at
// once; one created by another process (and not announced to a listener of
// this Driver) shows up in QueueStats within queueSetTTL.
const queueSetTTL = 30 * time.Second

// queueSet is a Driver's cached copy of P:queues (SMEMBERS), so that the
// control plane's frequent QueueStats calls do not read the set each time.
type queueSet struct {
	mu    sync.RWMutex
	names map[string]struct{}
	at    time.Time // when names was read from Redis; zero: never
	gen   uint64    // bumped by invalidate
}

// queueList returns the sorted queue names, reading P:queues when the copy is
// older than queueSetTTL.
func (d *Driver) queueList(ctx context.Context) ([]string, error) {
	s := &d.qset
	s.mu.RLock()
	fresh := !s.at.IsZero() && time.Since(s.at) < queueSetTTL
	var out []string
	if fresh {
		out = make([]string, 0, len(s.names))
		for q := range s.names {
			out = append(out, q)
		}
	}
	gen := s.gen
	s.mu.RUnlock()
	if !fresh {
		read := time.Now()
		names, err := d.rdb.SMembers(ctx, d.queuesKey()).Result()
		if err != nil {
			return nil, err
		}
		d.storeQueueSet(names, read, gen)
		out = names
	}
	slices.Sort(out)
	return out, nil
}

// storeQueueSet replaces the copy with a full read of P:queues made at read.
// The copy counts as fresh only if nothing invalidated it since gen was
// taken (the read may predate what the invalidation was about).
func (d *Driver) storeQueueSet(names []string, read time.Time, gen uint64) {
	s := &d.qset
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]struct{}, len(names))
	for _, q := range names {
		m[q] = struct{}{}
		d.known.Store(q, struct{}{})
	}
	for q := range s.names {
		// Names added meanwhile by addQueues are in P:queues too.
		if _, ok := m[q]; !ok && s.gen != gen {
			m[q] = struct{}{}
		}
	}
	s.names = m
	if s.gen == gen && read.After(s.at) {
		s.at = read
	}
}

// addQueues records queues known to be in P:queues (this Driver registered
// them, or a notification named them) in the copy.
func (d *Driver) addQueues(names ...string) {
	s := &d.qset
	s.mu.RLock()
	missing := false
	for _, q := range names {
		if _, ok := s.names[q]; !ok {
			missing = true
			break
		}
	}
	s.mu.RUnlock()
	if !missing {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names == nil {
		s.names = make(map[string]struct{}, len(names))
	}
	for _, q := range names {
		s.names[q] = struct{}{}
	}
	s.gen++
}

func (d *Driver) queuesKey() string { return d.prefix + ":queues" }

func (d *Driver) workersKey() string         { return d.prefix + ":workers:{w}" }
func (d *Driver) workerInfoKey() string      { return d.prefix + ":workers:{w}:info" }
func (d *Driver) workerDrainKey() string     { return d.prefix + ":workers:{w}:drain" }
func (d *Driver) queueChannelPrefix() string { return d.prefix + ":ch:q:" }

func checkQueue(q string) error {
	if q == "" {
		return errors.New("ebbredis: empty queue name; every task and call needs a queue")
	}
	return nil
}

// --- scripts -----------------------------------------------------------------

type script struct {
	raw  string // as written: header, luaLib marker, body
	once sync.Once
	src  string
	hash string
	body string // src without its header and helpers
	// The same script with keyCheck before its body: every redis.call
	// fails on a key the script did not declare. Only tests run it.
	checkedSrc  string
	checkedHash string
}

// keyCheck shadows redis.call and redis.pcall with versions that refuse
// a key outside KEYS. Redis 7.0 runs an undeclared key of the script's
// slot without complaint, and the manual calls that unsupported, so this
// is the only way to catch one. Every command the scripts use takes its
// key first, but for DEL, EXISTS and UNLINK (all arguments are keys) and
// PUBLISH (a channel, no key).
const keyCheck = `
local redis = (function(r)
  local declared = {}
  for _, k in ipairs(KEYS) do declared[k] = true end
  local function check(cmd, ...)
    local c = string.upper(cmd)
    if c == "PUBLISH" then return end
    local n = 1
    if c == "DEL" or c == "EXISTS" or c == "UNLINK" then n = select("#", ...) end
    for i = 1, n do
      local k = select(i, ...)
      if not declared[k] then
        error("ebb key check: " .. c .. " touches the undeclared key " .. tostring(k))
      end
    end
  end
  return setmetatable({
    call = function(cmd, ...) check(cmd, ...) return r.call(cmd, ...) end,
    pcall = function(cmd, ...) check(cmd, ...) return r.pcall(cmd, ...) end,
  }, {__index = r})
end)(redis)
`

// newScript only records the source: the helpers and hashes are worked
// out on first use, because every ebb process links this package and
// most never talk to Redis (a SQLite worker, the CLI).
func newScript(src string) *script { return &script{raw: src} }

// built fills in s on first use.
func (s *script) built() *script {
	s.once.Do(func() {
		src := s.raw
		checked, body := keyCheck+src, src
		if i := strings.Index(src, luaLib); i >= 0 {
			head, lib := src[:i], libFor(src[i+len(luaLib):])
			body = src[i+len(luaLib):]
			src = head + lib + body
			checked = head + keyCheck + lib + body
		}
		s.src, s.hash, s.body = src, sha1Hex(src), body
		s.checkedSrc, s.checkedHash = checked, sha1Hex(checked)
	})
	return s
}

// libFor returns the helpers of luaLib that body calls, directly or through
// another helper, in luaLib's order. Redis runs a script's whole chunk on
// every call, so each helper it carries is a closure built per call:
// the enqueue script spent more on creating the thirteen helpers it
// carried than on the five commands it runs.
func libFor(body string) string {
	need := map[string]bool{}
	helpers := libHelpers()
	for grown := true; grown; {
		grown = false
		for _, h := range helpers {
			if need[h.name] || !callsWord(body, h.name) {
				continue
			}
			need[h.name], grown = true, true
			body += h.src
		}
	}
	var b strings.Builder
	for _, h := range helpers {
		if need[h.name] {
			b.WriteString(h.src)
		}
	}
	return b.String()
}

// libHelper is one top-level definition of luaLib, with the comment
// lines before it.
type libHelper struct {
	name string
	src  string
}

var libHelpers = sync.OnceValue(func() []libHelper { return splitLib(luaLib) })

// callsWord reports whether name occurs in src as a whole Lua identifier.
func callsWord(src, name string) bool {
	for i := 0; ; {
		j := strings.Index(src[i:], name)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(name)
		if (start == 0 || !isIdentByte(src[start-1])) && (end == len(src) || !isIdentByte(src[end])) {
			return true
		}
		i = start + 1
	}
}

func isIdentByte(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// splitLib cuts a Lua source into its top-level `local` definitions: a
// definition runs from the comments before its first line to the next.
func splitLib(lib string) []libHelper {
	var out []libHelper
	var pending, cur strings.Builder
	name := ""
	flush := func() {
		if name != "" {
			out = append(out, libHelper{name: name, src: cur.String()})
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(lib, "\n") {
		switch {
		case strings.HasPrefix(line, "--"):
			pending.WriteString(line)
			continue
		case strings.HasPrefix(line, "local "):
			flush()
			rest := strings.TrimPrefix(strings.TrimPrefix(line, "local "), "function ")
			name = rest[:strings.IndexFunc(rest, func(r rune) bool { return !(r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) })]
		}
		cur.WriteString(pending.String())
		pending.Reset()
		cur.WriteString(line)
	}
	flush()
	return out
}

func sha1Hex(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// code returns the source and hash d runs for s.
func (d *Driver) code(s *script) (src, hash string) {
	s.built()
	if d.checkKeys {
		return s.checkedSrc, s.checkedHash
	}
	return s.src, s.hash
}

var (
	scriptEnqueue          = newScript(luaEnqueue)
	scriptEnqueueOne       = newScript(luaEnqueueOne)
	scriptFetch            = newScript(luaFetch)
	scriptComplete         = newScript(luaComplete)
	scriptExtend           = newScript(luaExtend)
	scriptRescue           = newScript(luaRescue)
	scriptPromote          = newScript(luaPromote)
	scriptCancel           = newScript(luaCancel)
	scriptAwaitMark        = newScript(luaAwaitMark)
	scriptAwaitUnmark      = newScript(luaAwaitUnmark)
	scriptDeadRetry        = newScript(luaDeadRetry)
	scriptDeadPurge        = newScript(luaDeadPurge)
	scriptCleanup          = newScript(luaCleanup)
	scriptRetry            = newScript(luaRetry)
	scriptDelete           = newScript(luaDelete)
	scriptWorkerHeartbeat  = newScript(luaWorkerHeartbeat)
	scriptWorkerList       = newScript(luaWorkerList)
	scriptWorkerDeregister = newScript(luaWorkerDeregister)
	scriptWorkerDrain      = newScript(luaWorkerDrain)
	scriptQueueStats       = newScript(luaQueueStats)
	// The schedule scripts' sources are in schedules.go.
	scriptScheduleUpsert    = newScript(luaScheduleUpsert)
	scriptScheduleDelete    = newScript(luaScheduleDelete)
	scriptSchedulePause     = newScript(luaSchedulePause)
	scriptScheduleMarkFired = newScript(luaScheduleMarkFired)
)

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// run runs a script with EVALSHA, falling back to EVAL (which also caches
// it) when Redis does not know it: after a restart or SCRIPT FLUSH.
func (d *Driver) run(ctx context.Context, s *script, keys []string, args ...any) *redis.Cmd {
	src, hash := d.code(s)
	cmd := d.rdb.EvalSha(ctx, hash, keys, args...)
	if isNoScript(cmd.Err()) {
		cmd = d.rdb.Eval(ctx, src, keys, args...)
	}
	return cmd
}

// call is one script call of a pipelined batch.
type call struct {
	s    *script
	keys []string
	args []any
	cmd  *redis.Cmd
}

// runPipelined sends the calls (and whatever extra queues) in one pipeline.
// Calls that hit NOSCRIPT did not run; they are sent again with EVAL. Errors
// stay on each call's cmd; the returned error is for the pipeline as a whole
// (connection trouble).
func (d *Driver) runPipelined(ctx context.Context, calls []*call, extra func(redis.Pipeliner)) error {
	pipe := d.rdb.Pipeline()
	if extra != nil {
		extra(pipe)
	}
	for _, c := range calls {
		_, hash := d.code(c.s)
		c.cmd = pipe.EvalSha(ctx, hash, c.keys, c.args...)
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	var retry []*call
	for _, c := range calls {
		if isNoScript(c.cmd.Err()) {
			retry = append(retry, c)
		}
	}
	if len(retry) > 0 {
		pipe = d.rdb.Pipeline()
		for _, c := range retry {
			src, _ := d.code(c.s)
			c.cmd = pipe.Eval(ctx, src, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}
