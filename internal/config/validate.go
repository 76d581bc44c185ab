package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/brokerurl"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path names the field ("pools[1].max", "server.token"), the command-line
	// flag that set it ("--concurrency", see Config.SetByFlag), or the
	// environment variable at fault ("EBB_POOL_REPORTS_MAXX"). It is empty
	// for a problem with the file as a whole, such as invalid YAML.
	Path string
	// Msg says what is wrong and, where it helps, what to write instead.
	Msg string
	// Origin is where the value came from, when known: "line 12",
	// "from EBB_POOL_REPORTS_MAX" or "default". A flag's problem has none:
	// its Path says it.
	Origin string
}

func (p Problem) Error() string {
	s := p.Msg
	if p.Path != "" {
		s = p.Path + ": " + s
	}
	if p.Origin != "" {
		s += " (" + p.Origin + ")"
	}
	return s
}

// Error is an invalid configuration. It lists every problem found, one per
// line, so a single run shows everything to fix.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string { return errors.Join(e.Unwrap()...).Error() }

// Unwrap lets errors.As find each Problem.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// problem builds a Problem at path, pointing at where its value came from.
func (c *Config) problem(path, format string, args ...any) Problem {
	msg := fmt.Sprintf(format, args...)
	if flag := c.flagFor(path); flag != "" {
		// The flag is what the user typed; the path may be news to them.
		return Problem{Path: flag, Msg: msg}
	}
	return Problem{Path: path, Msg: msg, Origin: c.origin(path)}
}

// requiredProblem builds a Problem for a value that is missing. It has no
// origin of its own unless it was set empty, and "(default)" would read as
// if the default were at fault, so it points at the section it is missing
// from inside a list entry (pools[1].ecs), or else at the entry (pools[1]),
// when the file has one.
func (c *Config) requiredProblem(path, msg string) Problem {
	if flag := c.flagFor(path); flag != "" {
		return Problem{Path: flag, Msg: msg}
	}
	p := Problem{Path: path, Msg: msg}
	if o, ok := lookup(c.origins, path); ok {
		p.Origin = o
		return p
	}
	// The innermost section the file wrote (pools[0].ecs), up to the entry.
	for e := parent(path); strings.Contains(e, "["); e = parent(e) {
		if o, ok := c.origins[e]; ok {
			p.Origin = o
			break
		}
		if strings.HasSuffix(e, "]") {
			break
		}
	}
	return p
}

func (c *Config) origin(path string) string {
	if c.origins == nil {
		return ""
	}
	if o, ok := lookup(c.origins, path); ok {
		return o
	}
	return "default"
}

func (c *Config) flagFor(path string) string {
	flag, _ := lookup(c.flags, path)
	return flag
}

// lookup finds path in m, or else the list that path is an element of: an
// element of a list set as a whole (queues from one variable) takes the
// list's origin.
func lookup(m map[string]string, path string) (string, bool) {
	for p := path; ; {
		if v, ok := m[p]; ok {
			return v, true
		}
		i := strings.LastIndexByte(p, '[')
		if i < 0 || !strings.HasSuffix(p, "]") {
			return "", false
		}
		p = p[:i]
	}
}

const nameChars = "1–128 characters from [A-Za-z0-9_.:-]"

// Validate reports every problem with c as an *Error, or nil.
func (c *Config) Validate() error {
	if probs := c.validate(nil); len(probs) > 0 {
		return &Error{Problems: probs}
	}
	return nil
}

// validate returns c's problems, leaving alone the values that l (Load's
// loader, or nil) could not read and any check that needs one of them. A
// problem found twice, as when one flag sets every pool, is reported once.
func (c *Config) validate(l *loader) []Problem {
	skip := l.skip
	var probs []Problem
	keep := func(path string, p Problem) {
		if !skip(path) && !slices.Contains(probs, p) {
			probs = append(probs, p)
		}
	}
	add := func(path, format string, args ...any) {
		keep(path, c.problem(path, format, args...))
	}
	required := func(path, msg string) {
		keep(path, c.requiredProblem(path, msg))
	}
	// positive also reports whether d can be compared with other values.
	positive := func(path string, d time.Duration) bool {
		if skip(path) {
			return false
		}
		if d <= 0 {
			add(path, "%s must be positive", d)
			return false
		}
		return true
	}

	c.validateBroker(add, required)
	c.validateServer(add, required)

	ttlOK := positive("leader.ttl", c.Leader.TTL)
	renewOK := positive("leader.renew_interval", c.Leader.RenewInterval)
	if ttlOK && renewOK && 2*c.Leader.RenewInterval >= c.Leader.TTL {
		add("leader.renew_interval", "%s must be less than half of leader.ttl (%s), so that one missed renewal does not lose the lease",
			c.Leader.RenewInterval, c.Leader.TTL)
	}
	positive("maintenance.rescue_interval", c.Maintenance.RescueInterval)
	positive("maintenance.cleanup_interval", c.Maintenance.CleanupInterval)
	positive("maintenance.dead_retention", c.Maintenance.DeadRetention)
	positive("autoscaler.reconcile_interval", c.Autoscaler.ReconcileInterval)

	names := map[string]int{}
	prefixes := map[string]int{}
	servedBy := map[string]int{}
	for i := range c.Pools {
		p := &c.Pools[i]
		path := fmt.Sprintf("pools[%d]", i)

		switch {
		case p.Name == "":
			required(path+".name", "required: "+nameChars)
		case !ebb.ValidName(p.Name):
			add(path+".name", "%q: use %s", p.Name, nameChars)
		default:
			if j, dup := names[p.Name]; dup {
				add(path+".name", "%q is also the name of pools[%d]", p.Name, j)
			} else if j, dup := prefixes[p.EnvPrefix()]; dup {
				add(path+".name", "%q and pools[%d] (%q) would share the variables %s*; use names that differ in more than case, -, . and :",
					p.Name, j, c.Pools[j].Name, p.EnvPrefix())
			}
			names[p.Name] = i
			prefixes[p.EnvPrefix()] = i
		}

		if len(p.Queues) == 0 {
			add(path+".queues", "empty; list at least one queue (the default is the pool's name)")
		}
		weighted := 0
		inPool := map[string]bool{}
		for j, q := range p.Queues {
			qpath := fmt.Sprintf("%s.queues[%d]", path, j)
			name, weight, ok := splitQueue(q)
			switch {
			case !ok:
				add(qpath, "%q: write name or name:weight with a positive integer weight (a pool's queue names cannot contain \":\")", q)
				continue
			case !ebb.ValidName(name):
				add(qpath, "%q: use 1–128 characters from [A-Za-z0-9_.-]", name)
				continue
			case inPool[name]:
				add(qpath, "%q is listed twice", name)
				continue
			}
			inPool[name] = true
			if weight > 0 {
				weighted++
			}
			if k, taken := servedBy[name]; taken {
				add(qpath, "queue %q is already served by pools[%d] (%q); a queue belongs to one pool", name, k, c.Pools[k].Name)
			} else {
				servedBy[name] = i
			}
		}
		if weighted > 0 && weighted < len(p.Queues) {
			add(path+".queues", "some queues have a weight and some do not; give every queue a weight (name:weight), or none for strict order")
		}

		switch p.Target {
		case TargetLocal:
		case TargetECS:
			c.validateECS(p, path, add, required)
		case TargetKubernetes:
			validateKubernetes(p, path, add, required)
		case "":
			add(path+".target", "empty; use %s, %s or %s", TargetLocal, TargetECS, TargetKubernetes)
		default:
			add(path+".target", "unknown target %q; use %s, %s or %s", p.Target, TargetLocal, TargetECS, TargetKubernetes)
		}
		if p.Celery != nil {
			c.validateCelery(p, path, add, required)
		}
		if p.Target != TargetECS && p.ECS != (ECS{}) {
			add(path+".ecs", "only an ecs pool uses it, and target is %q; set target: %s or remove ecs", p.Target, TargetECS)
		}
		if p.Target != TargetKubernetes && p.Kubernetes != (Kubernetes{}) {
			add(path+".kubernetes", "only a kubernetes pool uses it, and target is %q; set target: %s or remove kubernetes", p.Target, TargetKubernetes)
		}

		switch {
		case p.Min < 0:
			add(path+".min", "%d is negative", p.Min)
			if p.Max < 1 {
				add(path+".max", "%d must be at least 1", p.Max)
			}
		case p.Max < p.Min && !skip(path+".min"):
			add(path+".max", "%d is less than min %d", p.Max, p.Min)
		case p.Max < 1:
			add(path+".max", "%d must be at least 1", p.Max)
		}
		if p.Concurrency < 1 {
			add(path+".concurrency", "%d must be at least 1", p.Concurrency)
		}
		if len(p.Command) > 0 && strings.TrimSpace(p.Command[0]) == "" {
			add(path+".command[0]", "empty; name the program to run, or leave command out to run `ebb worker`")
		}
		for _, k := range slices.Sorted(maps.Keys(p.Env)) {
			kpath := path + ".env." + k
			if k == "" || strings.ContainsAny(k, "=\x00") {
				add(kpath, "%q is not a valid variable name", k)
			}
			// The value is not quoted: it may be a credential.
			if strings.ContainsRune(p.Env[k], 0) {
				add(kpath, "the value contains a NUL byte")
			}
		}
		// An ecs pool's workers write where their task definition says.
		if p.LogDir == "" && p.Target != TargetECS && p.Target != TargetKubernetes {
			add(path+".log_dir", "empty; name a directory (default %s)", LogDirDefault)
		}
		drainOK := positive(path+".drain_timeout", p.DrainTimeout)
		// A kubernetes pool's grace is the pod's terminationGracePeriodSeconds.
		if positive(path+".stop_grace", p.StopGrace) && drainOK && p.StopGrace <= p.DrainTimeout && p.Target != TargetKubernetes {
			add(path+".stop_grace", "%s must be longer than drain_timeout (%s), or workers are killed while they hand back unfinished tasks",
				p.StopGrace, p.DrainTimeout)
		}

		if p.Policy.BacklogPerWorker < 0 {
			add(path+".policy.backlog_per_worker", "%d is negative (0 means the pool's concurrency)", p.Policy.BacklogPerWorker)
		}
		positive(path+".policy.max_wait", p.Policy.MaxWait)
		if p.Policy.ScaleDownDelay != DelayDerived {
			positive(path+".policy.scale_down_delay", p.Policy.ScaleDownDelay)
		}
		if p.Policy.IdleBeforeZero != DelayDerived {
			positive(path+".policy.idle_before_zero", p.Policy.IdleBeforeZero)
		}
		if p.Policy.MaxStep < 0 {
			add(path+".policy.max_step", "%d is negative (0 means no limit)", p.Policy.MaxStep)
		}
	}
	c.validateSchedules(add, required, l)
	return probs
}

type addFunc = func(path, format string, args ...any)

// validateECS checks what an ecs pool needs. It names the problems the ECS
// target would otherwise report on its first call, or never: a command or
// env that the task definition silently overrides.
func (c *Config) validateECS(p *Pool, path string, add addFunc, required func(path, msg string)) {
	e := &p.ECS
	epath := path + ".ecs"
	for _, f := range []struct{ key, v, what string }{
		{"cluster", e.Cluster, "the name or ARN of the ECS cluster"},
		{"service", e.Service, "the name or ARN of the ECS service whose tasks run ebb worker for this pool"},
	} {
		switch {
		case f.v == "":
			required(epath+"."+f.key, "required for target ecs: "+f.what)
		case strings.ContainsFunc(f.v, isSpaceOrControl):
			add(epath+"."+f.key, "%q contains spaces or control characters", f.v)
		}
	}
	switch {
	case e.Region == "":
		required(epath+".region", "required for target ecs (e.g. eu-west-1), unless AWS_REGION or AWS_DEFAULT_REGION is set")
	case !validRegion(e.Region):
		add(epath+".region", "%q is not an AWS region name (e.g. eu-west-1)", e.Region)
	}
	if e.Endpoint != "" {
		u, err := url.Parse(e.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add(epath+".endpoint", "%q is not an http(s) URL (e.g. https://ecs.eu-west-1.amazonaws.com); leave it out for the default", e.Endpoint)
		}
	}
	if len(p.Command) > 0 {
		add(path+".command", "ECS runs the task definition's command; leave command out of an ecs pool")
	}
	if len(p.Env) > 0 {
		add(path+".env", "ECS tasks take their environment from the task definition; leave env out of an ecs pool")
	}
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// validRegion accepts region-shaped names (eu-west-1, us-gov-east-1, and the
// made-up names of local fakes) and catches typos such as spaces or capitals,
// which would otherwise surface as a failed DNS lookup of the endpoint.
func validRegion(r string) bool {
	if r == "" || r[0] == '-' || r[len(r)-1] == '-' {
		return false
	}
	return !strings.ContainsFunc(r, func(c rune) bool {
		return (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-'
	})
}

func (c *Config) validateBroker(add addFunc, required func(path, msg string)) {
	const use = "use redis://host:port/db, rediss://…, postgres://host:5432/dbname or sqlite:path/to/file.db"
	if c.Broker == "" {
		required("broker", "required; "+use)
		return
	}
	shown := brokerurl.Redact(c.Broker)
	scheme, rest, ok := strings.Cut(c.Broker, ":")
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		if !ok || strings.TrimPrefix(rest, "//") == "" {
			add("broker", "%q needs a host, e.g. redis://127.0.0.1:6379/0", shown)
		}
	case "postgres", "postgresql":
		if !ok || strings.TrimPrefix(rest, "//") == "" {
			add("broker", "%q needs a host and database, e.g. postgres://127.0.0.1:5432/app", shown)
		}
	case "sqlite", "sqlite3":
		if strings.TrimPrefix(rest, "//") == "" {
			add("broker", "%q needs a file path, e.g. sqlite:ebb.db", shown)
		}
	default:
		add("broker", "%q names no broker ebb knows; %s", shown, use)
	}
}

func (c *Config) validateServer(add addFunc, required func(path, msg string)) {
	const mint = "e.g. `openssl rand -hex 32`"
	loopback := true // unknown when listen is invalid; the token checks below then only look at the token
	host, port, err := net.SplitHostPort(c.Server.Listen)
	if err != nil {
		add("server.listen", "%q is not host:port (e.g. 127.0.0.1:8080, or :8080 for every interface)", c.Server.Listen)
	} else {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			add("server.listen", "port %q is not a number from 0 to 65535", port)
		}
		loopback = isLoopback(host)
	}
	tok := string(c.Server.Token)
	switch {
	case tok == "" && !loopback:
		required("server.token", fmt.Sprintf("required when server.listen (%s) is not a loopback address; set EBB_TOKEN to a random secret of at least %d characters (%s)",
			c.Server.Listen, TokenMinLength, mint))
	case tok == "":
	case len(tok) < TokenMinLength:
		// The token itself is never part of a message.
		add("server.token", "is %d characters; use at least %d (%s)", len(tok), TokenMinLength, mint)
	case strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		add("server.token", "contains spaces or control characters (a trailing newline?)")
	}
}

// isLoopback reports whether host only accepts connections from this
// machine. Other names are not resolved: a name's addresses can change after
// the check, so only "localhost" is trusted.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// splitQueue splits name:weight as `ebb worker --queues` does, at the first
// colon, so that the server passes a pool's queues to its workers unchanged.
func splitQueue(q string) (name string, weight int, ok bool) {
	name, w, hasWeight := strings.Cut(q, ":")
	if !hasWeight {
		return name, 0, true
	}
	n, err := strconv.Atoi(w)
	if err != nil || n < 1 {
		return name, 0, false
	}
	return name, n, true
}

func (c *Config) validateSchedules(add addFunc, required func(path, msg string), l *loader) {
	seen := map[string]int{}
	for i := range c.Schedules {
		s := &c.Schedules[i]
		path := fmt.Sprintf("schedules[%d]", i)
		switch {
		case s.Name == "":
			required(path+".name", "missing; every schedule needs a name")
		case !ebb.ValidName(s.Name):
			add(path+".name", "%q: use %s", s.Name, nameChars)
		default:
			if j, dup := seen[s.Name]; dup {
				add(path+".name", "%q is also the name of schedules[%d]", s.Name, j)
			}
			seen[s.Name] = i
		}
		switch {
		case s.Kind == "":
			required(path+".kind", "missing; name the task kind each tick enqueues")
		case !ebb.ValidKind(s.Kind):
			add(path+".kind", "%q: use 1–128 bytes of UTF-8 without control characters or spaces", s.Kind)
		}
		// Record checks the timing and options together, so it waits until
		// all of them could be read.
		if l.skip(path) || l.unreadUnder(path) {
			continue
		}
		if _, err := s.Record(time.Time{}); err != nil {
			add(path, "%v", err)
		}
	}
}
