package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path (none when path is ""), applies the
// EBB_* overrides found in env (os.Environ() in production), gives ecs pools
// without a region the one in AWS_REGION or AWS_DEFAULT_REGION, and
// validates the result. Every problem is reported at once as an *Error:
// first those reading the file (unknown keys, wrong types, bad durations) in
// document order, then those reading the variables, then validation's. A value that
// could not be read is not validated, nor checked against other values: the
// check would be of a default the user did not ask for.
func Load(path string, env []string) (*Config, error) {
	c := Default()
	c.origins = map[string]string{}
	l := &loader{c: c, unread: map[string]bool{}, merging: map[*yaml.Node]bool{}}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		l.decode(data)
	}
	l.applyEnv(env)
	l.regionsFromEnv(env)
	probs := append(l.probs, c.validate(l)...)
	if len(probs) > 0 {
		return nil, &Error{Problems: probs}
	}
	return c, nil
}

// loader reads a file and the environment into c, collecting problems
// instead of stopping at the first.
type loader struct {
	c     *Config
	probs []Problem
	// unread holds the paths whose value could not be read; "" stands for
	// the whole file.
	unread map[string]bool
	// merging holds the mappings being merged (<<: *base), so one that
	// merges itself is reported instead of recursing forever.
	merging map[*yaml.Node]bool
}

// fail reports a problem with the value at path, written at line, and marks
// it unread.
func (l *loader) fail(path string, line int, format string, args ...any) {
	l.unread[path] = true
	l.report(path, line, format, args...)
}

// report reports a problem at path, written at line. An anchored value is
// read once per alias, so its problems are reported once.
func (l *loader) report(path string, line int, format string, args ...any) {
	shown := path
	if shown == "" {
		shown = "(top level)"
	}
	p := Problem{Path: shown, Msg: fmt.Sprintf(format, args...), Origin: fmt.Sprintf("line %d", line)}
	if !slices.Contains(l.probs, p) {
		l.probs = append(l.probs, p)
	}
}

// unreadAt reports whether path or a value containing it could not be read.
func (l *loader) unreadAt(path string) bool {
	for p := path; ; p = parent(p) {
		if l.unread[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// unreadUnder reports whether a value inside path could not be read.
func (l *loader) unreadUnder(path string) bool {
	if l == nil {
		return false
	}
	for p := range l.unread {
		if strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[") {
			return true
		}
	}
	return false
}

// skip reports whether validation leaves path alone: its value could not be
// read, and no variable or flag set it afterwards. A nil loader (Validate
// on a Config that did not come from Load) skips nothing.
func (l *loader) skip(path string) bool {
	if l == nil {
		return false
	}
	if l.c.flagFor(path) != "" || strings.HasPrefix(l.c.origin(path), "from ") {
		return false
	}
	return l.unreadAt(path)
}

// parent is the path of the value that contains path's: pools[0] for
// pools[0].max, pools for pools[0], "" at the top.
func parent(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// decode applies the file on top of l.c and records where each value came
// from. The file is read as a node tree, which keeps every value's line, and
// checked against the schema below key by key, so that one pass finds every
// problem and names it by its path.
func (l *loader) decode(data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return // an empty file: all defaults
	}
	if err == nil {
		if err = dec.Decode(&extra); errors.Is(err, io.EOF) {
			err = nil
		} else if err == nil {
			// It would be silently ignored otherwise.
			l.probs = append(l.probs, Problem{Msg: fmt.Sprintf("a second YAML document starts at line %d; put everything in one", extra.Line)})
		}
	}
	if err != nil {
		l.probs = append(l.probs, Problem{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")})
		l.unread[""] = true
		l.c.Pools = nil
		return
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return
		}
		root = root.Content[0]
	}
	if isNull(root) {
		return
	}
	l.config(root)
	if l.unreadAt("pools") {
		// Not the default pool either: the file meant others.
		l.c.Pools = nil
	}
}

// reader reads the value n at path into the configuration, reporting what
// it cannot read.
type reader func(n *yaml.Node, path string)

// field is a key of a mapping in the file.
type field struct {
	key  string
	read reader
}

func (l *loader) config(n *yaml.Node) {
	c := l.c
	l.mapping(n, "", []field{
		{"broker", l.str(&c.Broker)},
		{"server", l.section(
			field{"listen", l.str(&c.Server.Listen)},
			field{"token", func(n *yaml.Node, path string) {
				if s, ok := l.scalar(n, path, "a string"); ok {
					c.Server.Token = Secret(s)
				}
			}},
			field{"read_only", l.bool(&c.Server.ReadOnly)},
		)},
		{"leader", l.section(
			field{"ttl", l.dur(&c.Leader.TTL)},
			field{"renew_interval", l.dur(&c.Leader.RenewInterval)},
		)},
		{"maintenance", l.section(
			field{"rescue_interval", l.dur(&c.Maintenance.RescueInterval)},
			field{"cleanup_interval", l.dur(&c.Maintenance.CleanupInterval)},
			field{"dead_retention", l.dur(&c.Maintenance.DeadRetention)},
		)},
		{"autoscaler", l.section(
			field{"reconcile_interval", l.dur(&c.Autoscaler.ReconcileInterval)},
		)},
		{"pools", l.list(func(n int) { c.Pools = make([]Pool, n) }, func(i int, n *yaml.Node, path string) {
			c.Pools[i] = l.pool(n, path)
		})},
		{"schedules", l.list(func(n int) { c.Schedules = make([]Schedule, n) }, func(i int, n *yaml.Node, path string) {
			l.schedule(&c.Schedules[i], n, path)
		})},
	})
}

func (l *loader) pool(n *yaml.Node, path string) Pool {
	p := DefaultPool("")
	p.Queues = nil
	queuesSet := false
	l.mapping(n, path, []field{
		{"name", l.str(&p.Name)},
		{"queues", func(n *yaml.Node, path string) {
			queuesSet = true
			l.strs(&p.Queues)(n, path)
		}},
		{"target", l.str(&p.Target)},
		{"ecs", l.section(
			field{"cluster", l.str(&p.ECS.Cluster)},
			field{"service", l.str(&p.ECS.Service)},
			field{"region", l.str(&p.ECS.Region)},
			field{"endpoint", l.str(&p.ECS.Endpoint)},
		)},
		{"celery", l.celery(&p)},
		{"kubernetes", l.section(
			field{"namespace", l.str(&p.Kubernetes.Namespace)},
			field{"deployment", l.str(&p.Kubernetes.Deployment)},
			field{"statefulset", l.str(&p.Kubernetes.StatefulSet)},
			field{"kubeconfig", l.str(&p.Kubernetes.Kubeconfig)},
			field{"keda", l.bool(&p.Kubernetes.KEDA)},
		)},
		{"min", l.int(&p.Min)},
		{"max", l.int(&p.Max)},
		{"concurrency", l.int(&p.Concurrency)},
		{"command", l.strs(&p.Command)},
		{"env", l.strMap(&p.Env)},
		{"log_dir", l.str(&p.LogDir)},
		{"drain_timeout", l.dur(&p.DrainTimeout)},
		{"stop_grace", l.dur(&p.StopGrace)},
		{"policy", l.section(
			field{"backlog_per_worker", l.int(&p.Policy.BacklogPerWorker)},
			field{"max_wait", l.dur(&p.Policy.MaxWait)},
			field{"scale_down_delay", l.dur(&p.Policy.ScaleDownDelay)},
			field{"idle_before_zero", l.dur(&p.Policy.IdleBeforeZero)},
			field{"max_step", l.int(&p.Policy.MaxStep)},
		)},
	})
	if !queuesSet {
		if l.unreadAt(path + ".name") {
			// The default is the name, which is unknown.
			l.unread[path+".queues"] = true
		} else if p.Name != "" {
			p.Queues = []string{p.Name}
		}
	}
	return p
}

func (l *loader) schedule(s *Schedule, n *yaml.Node, path string) {
	l.mapping(n, path, []field{
		{"name", l.str(&s.Name)},
		{"cron", l.str(&s.Cron)},
		{"tz", l.str(&s.TZ)},
		{"every", l.dur(&s.Every)},
		{"at", func(n *yaml.Node, path string) {
			v, ok := l.scalar(n, path, "an RFC 3339 time")
			if !ok {
				return
			}
			at, err := time.Parse(time.RFC3339, strings.TrimSpace(v))
			if err != nil {
				l.fail(path, n.Line, "%q is not an RFC 3339 time (e.g. 2027-01-01T09:00:00+01:00)", v)
				return
			}
			s.At = at
		}},
		{"catch_up", l.str(&s.CatchUp)},
		{"kind", l.str(&s.Kind)},
		{"args", func(n *yaml.Node, path string) {
			n = resolve(n)
			if !l.is(n, path, yaml.MappingNode, "a mapping") {
				return
			}
			// Decode would report a key set twice in the library's words.
			if l.pairs(n, path); l.unreadUnder(path) {
				return
			}
			var args map[string]any
			if err := n.Decode(&args); err != nil {
				l.fail(path, n.Line, "cannot be read: %s", decodeError(err))
				return
			}
			s.Args = args
		}},
		{"queue", l.str(&s.Queue)},
		{"priority", l.str(&s.Priority)},
		{"max_attempts", l.int(&s.MaxAttempts)},
		{"timeout", l.dur(&s.Timeout)},
	})
}

func decodeError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return strings.Join(te.Errors, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// mapping reads the mapping n at path, each key through its field. Keys
// without a value (key: or key: ~) keep their default.
func (l *loader) mapping(n *yaml.Node, path string, fields []field) {
	n = resolve(n)
	if path != "" {
		l.c.origins[path] = lineOf(n)
	}
	if !l.is(n, path, yaml.MappingNode, "a mapping") {
		return
	}
	for _, kv := range l.pairs(n, path) {
		key := kv.key.Value
		child := join(path, key)
		i := slices.IndexFunc(fields, func(f field) bool { return f.key == key })
		if i < 0 {
			keys := make([]string, len(fields))
			for j, f := range fields {
				keys[j] = f.key
			}
			// Not a value of the configuration, so none is unread.
			l.report(child, kv.key.Line, "unknown key; use one of %s", strings.Join(keys, ", "))
			continue
		}
		v := resolve(kv.value)
		if isNull(v) {
			continue
		}
		l.c.origins[child] = lineOf(v)
		fields[i].read(v, child)
	}
}

func (l *loader) section(fields ...field) reader {
	return func(n *yaml.Node, path string) { l.mapping(n, path, fields) }
}

// list reads a list of mappings: size makes room for n entries, then entry
// reads each.
func (l *loader) list(size func(n int), entry func(i int, n *yaml.Node, path string)) reader {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if !l.is(n, path, yaml.SequenceNode, "a list of mappings") {
			return
		}
		size(len(n.Content))
		for i, e := range n.Content {
			entry(i, e, index(path, i))
		}
	}
}

type pair struct{ key, value *yaml.Node }

// pairs returns the keys and values of the mapping n, with merge keys
// (<<: *base) expanded in their place: keys written in n win over merged
// ones, and earlier merged mappings over later ones, as YAML says. A key
// written twice is a problem, and the first is used.
func (l *loader) pairs(n *yaml.Node, path string) []pair {
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && !isMerge(k) && first[k.Value] == nil {
			first[k.Value] = k
		}
	}
	var out []pair
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case isMerge(k):
			l.merging[n] = true
			for _, m := range l.merged(k, v, path) {
				for _, p := range l.pairs(m, path) {
					if first[p.key.Value] == nil && !seen[p.key.Value] {
						seen[p.key.Value] = true
						out = append(out, p)
					}
				}
			}
			delete(l.merging, n)
		case k.Kind != yaml.ScalarNode:
			l.report(path, k.Line, "a key must be a name, not %s", describe(k))
		case first[k.Value] != k:
			l.fail(join(path, k.Value), k.Line, "set twice (first at line %d)", first[k.Value].Line)
		default:
			out = append(out, pair{k, v})
		}
	}
	return out
}

// merged returns the mappings that the merge key k names with v.
func (l *loader) merged(k, v *yaml.Node, path string) []*yaml.Node {
	mpath := join(path, k.Value)
	v = resolve(v)
	ms := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		ms = make([]*yaml.Node, len(v.Content))
		for i, m := range v.Content {
			ms[i] = resolve(m)
		}
	}
	for _, m := range ms {
		if m.Kind != yaml.MappingNode {
			l.fail(mpath, k.Line, "expected a mapping or a list of mappings to merge, got %s", describe(m))
			return nil
		}
		if l.merging[m] {
			l.fail(mpath, k.Line, "merges a mapping into itself")
			return nil
		}
	}
	return ms
}

// scalar returns the text of the scalar n, or reports that n is not one,
// calling the expected value want.
func (l *loader) scalar(n *yaml.Node, path, want string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		l.fail(path, n.Line, "expected %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

func (l *loader) str(dst *string) reader {
	return func(n *yaml.Node, path string) {
		if s, ok := l.scalar(n, path, "a string"); ok {
			*dst = s
		}
	}
}

func (l *loader) int(dst *int) reader {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		var i int
		// The tag check keeps out "5" (quoted) and 2.5, which Decode would
		// accept; Decode then reads 0x1f, 1_000 and the like as YAML does.
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			l.fail(path, n.Line, "expected an integer, got %s", describe(n))
			return
		}
		*dst = i
	}
}

func (l *loader) bool(dst *bool) reader {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			l.fail(path, n.Line, "expected true or false, got %s", describe(n))
			return
		}
		*dst = b
	}
}

// dur reads a duration from its text, so that 30 (no unit) is an error
// rather than 30 nanoseconds.
func (l *loader) dur(dst *time.Duration) reader {
	return func(n *yaml.Node, path string) {
		v, ok := l.scalar(n, path, "a duration (e.g. 30s, 5m)")
		if !ok {
			return
		}
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			l.fail(path, n.Line, "%q is not a duration (use e.g. 30s, 5m)", v)
			return
		}
		*dst = d
	}
}

// strs reads a list of strings. A list with a bad element is not used, so
// that it is not validated without that element either.
func (l *loader) strs(dst *[]string) reader {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if !l.is(n, path, yaml.SequenceNode, "a list of strings") {
			return
		}
		out := make([]string, len(n.Content))
		ok := true
		for i, e := range n.Content {
			e = resolve(e)
			epath := index(path, i)
			l.c.origins[epath] = lineOf(e)
			var good bool
			out[i], good = l.scalar(e, epath, "a string")
			ok = ok && good
		}
		if !ok {
			l.unread[path] = true
			return
		}
		*dst = out
	}
}

// strMap reads the env mapping. A key without a value is the empty string,
// as in a shell.
func (l *loader) strMap(dst *map[string]string) reader {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if !l.is(n, path, yaml.MappingNode, "a mapping of names to strings") {
			return
		}
		m := map[string]string{}
		for _, kv := range l.pairs(n, path) {
			kpath := join(path, kv.key.Value)
			v := resolve(kv.value)
			l.c.origins[kpath] = lineOf(v)
			if isNull(v) {
				m[kv.key.Value] = ""
			} else if s, ok := l.scalar(v, kpath, "a string"); ok {
				m[kv.key.Value] = s
			}
		}
		*dst = m
	}
}

// is reports whether n is of kind, and reports a problem if not, calling the
// expected value want.
func (l *loader) is(n *yaml.Node, path string, kind yaml.Kind, want string) bool {
	n = resolve(n)
	if n.Kind != kind {
		l.fail(path, n.Line, "expected %s, got %s", want, describe(n))
		return false
	}
	return true
}

// resolve follows an alias (*name) to the value its anchor (&name) marks.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge"
}

func lineOf(n *yaml.Node) string { return fmt.Sprintf("line %d", n.Line) }

func describe(n *yaml.Node) string {
	n = resolve(n)
	switch {
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case isNull(n):
		return "nothing"
	}
	// A long value in the wrong place may be a secret that lost its key to a
	// typo ("token:…" without the space is one string): show enough to find
	// it, not the value (found by fuzzing).
	if r := []rune(n.Value); len(r) > 24 {
		return fmt.Sprintf("%q… (%d characters)", string(r[:8]), len(r))
	}
	return fmt.Sprintf("%q", n.Value)
}
