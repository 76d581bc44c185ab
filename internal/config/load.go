package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path (none when path is ""), applies the
// EBB_* overrides found in env (os.Environ() in production), and validates
// the result. Every problem is reported at once as an *Error; problems in
// the file's shape or the variables (unknown keys, wrong types, bad
// durations) are reported before validation runs, because validating
// half-read values would add misleading follow-on errors.
func Load(path string, env []string) (*Config, error) {
	c := Default()
	c.origins = map[string]string{}
	var probs []Problem
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		probs = c.decode(data)
	}
	probs = append(probs, c.applyEnv(env)...)
	if len(probs) > 0 {
		return nil, &Error{Problems: probs}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// The file's shape. Pointers tell "absent" (take the default) from an
// explicit zero (validate it): `max: 0` must be an error, not 4. Durations are
// strings parsed here so their errors name the path.
type (
	fileConfig struct {
		Broker      *string          `yaml:"broker"`
		Server      *fileServer      `yaml:"server"`
		Leader      *fileLeader      `yaml:"leader"`
		Maintenance *fileMaintenance `yaml:"maintenance"`
		Autoscaler  *fileAutoscaler  `yaml:"autoscaler"`
		Pools       *[]filePool      `yaml:"pools"`
		Schedules   *[]fileSchedule  `yaml:"schedules"`
	}
	fileSchedule struct {
		Name        *string        `yaml:"name"`
		Cron        *string        `yaml:"cron"`
		TZ          *string        `yaml:"tz"`
		Every       *string        `yaml:"every"`
		At          *string        `yaml:"at"`
		CatchUp     *string        `yaml:"catch_up"`
		Kind        *string        `yaml:"kind"`
		Args        map[string]any `yaml:"args"`
		Queue       *string        `yaml:"queue"`
		Priority    *string        `yaml:"priority"`
		MaxAttempts *int           `yaml:"max_attempts"`
		Timeout     *string        `yaml:"timeout"`
	}
	fileServer struct {
		Listen   *string `yaml:"listen"`
		Token    *string `yaml:"token"`
		ReadOnly *bool   `yaml:"read_only"`
	}
	fileLeader struct {
		TTL           *string `yaml:"ttl"`
		RenewInterval *string `yaml:"renew_interval"`
	}
	fileMaintenance struct {
		RescueInterval  *string `yaml:"rescue_interval"`
		CleanupInterval *string `yaml:"cleanup_interval"`
		DeadRetention   *string `yaml:"dead_retention"`
	}
	fileAutoscaler struct {
		ReconcileInterval *string `yaml:"reconcile_interval"`
	}
	filePool struct {
		Name         *string           `yaml:"name"`
		Queues       *[]string         `yaml:"queues"`
		Target       *string           `yaml:"target"`
		Min          *int              `yaml:"min"`
		Max          *int              `yaml:"max"`
		Concurrency  *int              `yaml:"concurrency"`
		Command      *[]string         `yaml:"command"`
		Env          map[string]string `yaml:"env"`
		LogDir       *string           `yaml:"log_dir"`
		DrainTimeout *string           `yaml:"drain_timeout"`
		StopGrace    *string           `yaml:"stop_grace"`
		Policy       *filePolicy       `yaml:"policy"`
	}
	filePolicy struct {
		BacklogPerWorker *int    `yaml:"backlog_per_worker"`
		MaxWait          *string `yaml:"max_wait"`
		ScaleDownDelay   *string `yaml:"scale_down_delay"`
		IdleBeforeZero   *string `yaml:"idle_before_zero"`
		MaxStep          *int    `yaml:"max_step"`
	}
)

// decode applies the file on top of c and records where each value came from.
func (c *Config) decode(data []byte) []Problem {
	// The library's messages carry line numbers but name Go types; a parallel
	// walk of the node tree maps those lines back to field paths.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return []Problem{{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	idx := newNodeIndex(&root)
	for path, line := range idx.lines {
		c.origins[path] = fmt.Sprintf("line %d", line)
	}

	var f fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&f)
	var probs []Problem
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF): // io.EOF: an empty file, all defaults
	case errors.As(err, &te):
		for _, msg := range te.Errors {
			probs = append(probs, idx.translate(msg))
		}
	default:
		return []Problem{{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if err == nil {
		// A second document would be silently ignored otherwise.
		var extra yaml.Node
		if dec.Decode(&extra) == nil {
			probs = append(probs, Problem{Msg: fmt.Sprintf("a second YAML document starts at line %d; put everything in one", extra.Line)})
		}
	}
	// After a type error the rest of the file is still decoded, so its bad
	// durations are reported in the same run.
	return append(probs, c.apply(&f)...)
}

func (c *Config) apply(f *fileConfig) []Problem {
	var probs []Problem
	dur := func(dst *time.Duration, src *string, path string) {
		if src == nil {
			return
		}
		d, err := time.ParseDuration(strings.TrimSpace(*src))
		if err != nil {
			probs = append(probs, c.problem(path, "%q is not a duration (use e.g. 30s, 5m)", *src))
			return
		}
		*dst = d
	}
	set(&c.Broker, f.Broker)
	if s := f.Server; s != nil {
		set(&c.Server.Listen, s.Listen)
		if s.Token != nil {
			c.Server.Token = Secret(*s.Token)
		}
		set(&c.Server.ReadOnly, s.ReadOnly)
	}
	if l := f.Leader; l != nil {
		dur(&c.Leader.TTL, l.TTL, "leader.ttl")
		dur(&c.Leader.RenewInterval, l.RenewInterval, "leader.renew_interval")
	}
	if m := f.Maintenance; m != nil {
		dur(&c.Maintenance.RescueInterval, m.RescueInterval, "maintenance.rescue_interval")
		dur(&c.Maintenance.CleanupInterval, m.CleanupInterval, "maintenance.cleanup_interval")
		dur(&c.Maintenance.DeadRetention, m.DeadRetention, "maintenance.dead_retention")
	}
	if a := f.Autoscaler; a != nil {
		dur(&c.Autoscaler.ReconcileInterval, a.ReconcileInterval, "autoscaler.reconcile_interval")
	}
	if f.Pools != nil {
		c.Pools = make([]Pool, len(*f.Pools))
		for i, fp := range *f.Pools {
			p := DefaultPool("")
			path := fmt.Sprintf("pools[%d]", i)
			set(&p.Name, fp.Name)
			p.Queues = nil
			if fp.Queues != nil {
				p.Queues = *fp.Queues
			} else if p.Name != "" {
				p.Queues = []string{p.Name}
			}
			set(&p.Target, fp.Target)
			set(&p.Min, fp.Min)
			set(&p.Max, fp.Max)
			set(&p.Concurrency, fp.Concurrency)
			set(&p.Command, fp.Command)
			p.Env = fp.Env
			set(&p.LogDir, fp.LogDir)
			dur(&p.DrainTimeout, fp.DrainTimeout, path+".drain_timeout")
			dur(&p.StopGrace, fp.StopGrace, path+".stop_grace")
			if fq := fp.Policy; fq != nil {
				set(&p.Policy.BacklogPerWorker, fq.BacklogPerWorker)
				dur(&p.Policy.MaxWait, fq.MaxWait, path+".policy.max_wait")
				dur(&p.Policy.ScaleDownDelay, fq.ScaleDownDelay, path+".policy.scale_down_delay")
				dur(&p.Policy.IdleBeforeZero, fq.IdleBeforeZero, path+".policy.idle_before_zero")
				set(&p.Policy.MaxStep, fq.MaxStep)
			}
			c.Pools[i] = p
		}
	}
	if f.Schedules != nil {
		c.Schedules = make([]Schedule, len(*f.Schedules))
		for i, fs := range *f.Schedules {
			var s Schedule
			path := fmt.Sprintf("schedules[%d]", i)
			set(&s.Name, fs.Name)
			set(&s.Cron, fs.Cron)
			set(&s.TZ, fs.TZ)
			dur(&s.Every, fs.Every, path+".every")
			if fs.At != nil {
				at, err := time.Parse(time.RFC3339, strings.TrimSpace(*fs.At))
				if err != nil {
					probs = append(probs, c.problem(path+".at", "%q is not an RFC 3339 time (e.g. 2027-01-01T09:00:00+01:00)", *fs.At))
				}
				s.At = at
			}
			set(&s.CatchUp, fs.CatchUp)
			set(&s.Kind, fs.Kind)
			s.Args = fs.Args
			set(&s.Queue, fs.Queue)
			set(&s.Priority, fs.Priority)
			set(&s.MaxAttempts, fs.MaxAttempts)
			dur(&s.Timeout, fs.Timeout, path+".timeout")
			c.Schedules[i] = s
		}
	}
	return probs
}

func set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// nodeIndex maps the line numbers in the YAML library's messages to field
// paths.
type nodeIndex struct {
	keys   map[lineKey]string  // a mapping key at a line → its path
	values map[int][]valueNode // nodes starting at a line, in document order
	lines  map[string]int      // path → line of its value
}

type lineKey struct {
	line int
	key  string
}

type valueNode struct {
	path string
	node *yaml.Node
}

func newNodeIndex(root *yaml.Node) *nodeIndex {
	idx := &nodeIndex{keys: map[lineKey]string{}, values: map[int][]valueNode{}, lines: map[string]int{}}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != 0 {
		idx.walk(n, "")
	}
	return idx
}

func (idx *nodeIndex) walk(n *yaml.Node, path string) {
	idx.values[n.Line] = append(idx.values[n.Line], valueNode{path, n})
	if path != "" {
		idx.lines[path] = n.Line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := k.Value
			if path != "" {
				child = path + "." + k.Value
			}
			if _, dup := idx.keys[lineKey{k.Line, k.Value}]; !dup {
				idx.keys[lineKey{k.Line, k.Value}] = child
			}
			idx.walk(v, child)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			idx.walk(v, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

var (
	reUnknown  = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	reTwice    = regexp.MustCompile(`^line (\d+): field (.+) already set in type \S+$`)
	reMapTwice = regexp.MustCompile(`^line (\d+): mapping key "(.*)" already defined at line (\d+)$`)
	reType     = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (\\S+)$")
)

// translate turns one of the YAML library's decode errors into a Problem
// named by path. Messages it does not recognise pass through unchanged.
func (idx *nodeIndex) translate(msg string) Problem {
	if m := reUnknown.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		path := idx.keys[lineKey{line, m[2]}]
		if path == "" {
			path = m[2]
		}
		return Problem{Path: path, Msg: "unknown key" + knownKeys(m[3]), Origin: "line " + m[1]}
	}
	if m := reTwice.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Path: idx.keyPath(line, m[2]), Msg: "set twice", Origin: "line " + m[1]}
	}
	if m := reMapTwice.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Path: idx.keyPath(line, m[2]), Msg: "set twice (first at line " + m[3] + ")", Origin: "line " + m[1]}
	}
	if m := reType.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		path, got := idx.valueAt(line, m[2], m[3])
		if path == "" {
			path = "(top level)"
		}
		return Problem{Path: path, Msg: "expected " + goTypeName(m[4]) + ", got " + got, Origin: "line " + m[1]}
	}
	return Problem{Msg: msg}
}

func (idx *nodeIndex) keyPath(line int, key string) string {
	if p := idx.keys[lineKey{line, key}]; p != "" {
		return p
	}
	return key
}

// valueAt finds the node a type error is about: the first at its line whose
// kind (and, for scalars, the start of its value) matches the message.
func (idx *nodeIndex) valueAt(line int, tag, value string) (path, got string) {
	cands := idx.values[line]
	want := yaml.ScalarNode
	switch tag {
	case "!!seq":
		want = yaml.SequenceNode
	case "!!map":
		want = yaml.MappingNode
	}
	prefix := strings.TrimSuffix(value, "...")
	for _, c := range cands {
		if c.node.Kind == want && (want != yaml.ScalarNode || strings.HasPrefix(c.node.Value, prefix)) {
			return c.path, describe(c.node)
		}
	}
	if len(cands) > 0 {
		return cands[0].path, describe(cands[0].node)
	}
	return "", tag
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	if n.ShortTag() == "!!null" {
		return "nothing"
	}
	return strconv.Quote(n.Value)
}

func goTypeName(t string) string {
	t = strings.TrimLeft(t, "*")
	switch {
	case t == "int":
		return "an integer"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case t == "[]string":
		return "a list of strings"
	case t == "map[string]string":
		return "a mapping of names to strings"
	case strings.HasPrefix(t, "[]"):
		return "a list of mappings"
	}
	return "a mapping"
}

// fileTypes names the keys each file type accepts, for unknown-key errors.
var fileTypes = map[string][]string{}

func init() {
	for _, v := range []any{fileConfig{}, fileServer{}, fileLeader{}, fileMaintenance{}, fileAutoscaler{}, filePool{}, filePolicy{}, fileSchedule{}} {
		t := reflect.TypeOf(v)
		var keys []string
		for i := range t.NumField() {
			keys = append(keys, strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0])
		}
		fileTypes[t.String()] = keys
	}
}

func knownKeys(goType string) string {
	keys, ok := fileTypes[goType]
	if !ok {
		return ""
	}
	return "; use one of " + strings.Join(keys, ", ")
}

// Environment overrides.

// poolEnvFields are the EBB_POOL_<NAME>_<FIELD> fields, each with the path
// it sets below pools[i] and how it parses.
var poolEnvFields = []struct {
	field, path string
	apply       func(p *Pool, v string) string // returns a problem or ""
}{
	{"MIN", "min", func(p *Pool, v string) string { return envInt(&p.Min, v) }},
	{"MAX", "max", func(p *Pool, v string) string { return envInt(&p.Max, v) }},
	{"CONCURRENCY", "concurrency", func(p *Pool, v string) string { return envInt(&p.Concurrency, v) }},
	{"QUEUES", "queues", func(p *Pool, v string) string {
		p.Queues = []string{}
		for q := range strings.SplitSeq(v, ",") {
			if q = strings.TrimSpace(q); q != "" {
				p.Queues = append(p.Queues, q)
			}
		}
		return ""
	}},
	{"MAX_WAIT", "policy.max_wait", func(p *Pool, v string) string { return envDur(&p.Policy.MaxWait, v) }},
	{"SCALE_DOWN_DELAY", "policy.scale_down_delay", func(p *Pool, v string) string { return envDur(&p.Policy.ScaleDownDelay, v) }},
	{"IDLE_BEFORE_ZERO", "policy.idle_before_zero", func(p *Pool, v string) string { return envDur(&p.Policy.IdleBeforeZero, v) }},
	{"BACKLOG_PER_WORKER", "policy.backlog_per_worker", func(p *Pool, v string) string { return envInt(&p.Policy.BacklogPerWorker, v) }},
	{"MAX_STEP", "policy.max_step", func(p *Pool, v string) string { return envInt(&p.Policy.MaxStep, v) }},
}

func envInt(dst *int, v string) string {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Sprintf("%q is not an integer", v)
	}
	*dst = n
	return ""
}

func envDur(dst *time.Duration, v string) string {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return fmt.Sprintf("%q is not a duration (use e.g. 30s, 5m)", v)
	}
	*dst = d
	return ""
}

const poolEnvPrefix = "EBB_POOL_"

// applyEnv applies the EBB_* overrides. An empty value counts as unset, as
// EBB_BROKER does on the command line, so `EBB_TOKEN= ebb server` cannot
// clear a token by accident. Other EBB_ variables belong to other parts of
// ebb and are left alone; EBB_POOL_* ones must all match a pool and field.
func (c *Config) applyEnv(env []string) []Problem {
	vars := map[string]string{}
	var names []string
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "EBB_") || v == "" {
			continue
		}
		// The first occurrence wins, as with os.Getenv.
		if _, seen := vars[k]; !seen {
			vars[k] = v
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var probs []Problem
	for _, k := range names {
		v := vars[k]
		switch k {
		case "EBB_BROKER":
			c.Broker = v
			c.setOrigin("broker", k)
		case "EBB_LISTEN":
			c.Server.Listen = v
			c.setOrigin("server.listen", k)
		case "EBB_TOKEN":
			c.Server.Token = Secret(v)
			c.setOrigin("server.token", k)
		case "EBB_READ_ONLY":
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				probs = append(probs, Problem{Path: k, Msg: fmt.Sprintf("%q is not a boolean (use true or false)", v)})
				continue
			}
			c.Server.ReadOnly = b
			c.setOrigin("server.read_only", k)
		default:
			if strings.HasPrefix(k, poolEnvPrefix) {
				if msg := c.applyPoolEnv(k, v); msg != "" {
					probs = append(probs, Problem{Path: k, Msg: msg})
				}
			}
		}
	}
	return probs
}

func (c *Config) applyPoolEnv(k, v string) string {
	rest := strings.TrimPrefix(k, poolEnvPrefix)
	type match struct {
		pool  int
		field int
	}
	var matches []match
	poolHit := -1 // a pool whose prefix matched, for the unknown-field message
	for i := range c.Pools {
		name := envName(c.Pools[i].Name)
		field, ok := strings.CutPrefix(rest, name+"_")
		if !ok || name == "" {
			continue
		}
		if poolHit < 0 || len(name) > len(envName(c.Pools[poolHit].Name)) {
			poolHit = i
		}
		for j, f := range poolEnvFields {
			if f.field == field {
				matches = append(matches, match{i, j})
			}
		}
	}
	switch {
	case len(matches) > 1:
		var which []string
		for _, m := range matches {
			which = append(which, strconv.Quote(c.Pools[m.pool].Name))
		}
		return "matches more than one pool (" + strings.Join(which, ", ") + "); give the pools names that differ in more than case, -, . and :"
	case len(matches) == 0 && poolHit >= 0:
		p := &c.Pools[poolHit]
		var fields []string
		for _, f := range poolEnvFields {
			fields = append(fields, f.field)
		}
		return fmt.Sprintf("unknown field %s for pool %q; use %s followed by one of %s",
			strings.TrimPrefix(k, p.EnvPrefix()), p.Name, p.EnvPrefix(), strings.Join(fields, ", "))
	case len(matches) == 0:
		if len(c.Pools) == 0 {
			return "no pools are configured"
		}
		var pools []string
		for i := range c.Pools {
			pools = append(pools, fmt.Sprintf("%q (%s…)", c.Pools[i].Name, c.Pools[i].EnvPrefix()))
		}
		return "names no configured pool; the pools are " + strings.Join(pools, ", ")
	}
	m := matches[0]
	f := poolEnvFields[m.field]
	if msg := f.apply(&c.Pools[m.pool], v); msg != "" {
		return msg
	}
	c.setOrigin(fmt.Sprintf("pools[%d].%s", m.pool, f.path), k)
	return ""
}

// setOrigin records that path was set by an environment variable; whatever
// the file said about it or its elements no longer applies.
func (c *Config) setOrigin(path, envVar string) {
	for p := range c.origins {
		if strings.HasPrefix(p, path+"[") || strings.HasPrefix(p, path+".") {
			delete(c.origins, p)
		}
	}
	c.origins[path] = "from " + envVar
}
