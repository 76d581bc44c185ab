package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
	{"ECS_CLUSTER", "ecs.cluster", func(p *Pool, v string) string { p.ECS.Cluster = v; return "" }},
	{"ECS_SERVICE", "ecs.service", func(p *Pool, v string) string { p.ECS.Service = v; return "" }},
	{"ECS_REGION", "ecs.region", func(p *Pool, v string) string { p.ECS.Region = v; return "" }},
	{"ECS_ENDPOINT", "ecs.endpoint", func(p *Pool, v string) string { p.ECS.Endpoint = v; return "" }},
	{"KUBERNETES_NAMESPACE", "kubernetes.namespace", func(p *Pool, v string) string { p.Kubernetes.Namespace = v; return "" }},
	{"KUBERNETES_DEPLOYMENT", "kubernetes.deployment", func(p *Pool, v string) string { p.Kubernetes.Deployment = v; return "" }},
	{"KUBERNETES_STATEFULSET", "kubernetes.statefulset", func(p *Pool, v string) string { p.Kubernetes.StatefulSet = v; return "" }},
	{"KUBERNETES_KUBECONFIG", "kubernetes.kubeconfig", func(p *Pool, v string) string { p.Kubernetes.Kubeconfig = v; return "" }},
	{"KUBERNETES_KEDA", "kubernetes.keda", func(p *Pool, v string) string { return envBool(&p.Kubernetes.KEDA, v) }},
}

// getenv is os.Getenv on env: the first occurrence wins.
func getenv(env []string, k string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, k+"="); ok {
			return v
		}
	}
	return ""
}

// regionEnv are the variables the AWS SDK reads a region from, in its order.
var regionEnv = []string{"AWS_REGION", "AWS_DEFAULT_REGION"}

// regionsFromEnv gives each ecs pool that names no region the one the AWS
// SDK would find in env. Doing it here rather than in the SDK puts the
// region in the validated config, where a missing one is reported with the
// pool, and shows where it came from. A region in a shared config profile is
// deliberately not read: the server's behaviour should not depend on files
// in its home directory.
func (l *loader) regionsFromEnv(env []string) {
	var name, region string
	for _, k := range regionEnv {
		if v := getenv(env, k); v != "" {
			name, region = k, v
			break
		}
	}
	if region == "" {
		return
	}
	for i := range l.c.Pools {
		p := &l.c.Pools[i]
		path := index("pools", i) + ".ecs.region"
		if p.Target == TargetECS && p.ECS.Region == "" && !l.unreadAt(path) {
			p.ECS.Region = region
			l.c.setOrigin(path, name)
		}
	}
}

func envInt(dst *int, v string) string {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Sprintf("%q is not an integer", v)
	}
	*dst = n
	return ""
}

func envBool(dst *bool, v string) string {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return fmt.Sprintf("%q is not a boolean (use true or false)", v)
	}
	*dst = b
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
// A variable whose value does not parse leaves its field unread.
func (l *loader) applyEnv(env []string) {
	c := l.c
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
				l.probs = append(l.probs, Problem{Path: k, Msg: fmt.Sprintf("%q is not a boolean (use true or false)", v)})
				l.unread["server.read_only"] = true
				continue
			}
			c.Server.ReadOnly = b
			c.setOrigin("server.read_only", k)
		default:
			if strings.HasPrefix(k, poolEnvPrefix) {
				if msg := l.applyPoolEnv(k, v); msg != "" {
					l.probs = append(l.probs, Problem{Path: k, Msg: msg})
				}
			}
		}
	}
}

func (l *loader) applyPoolEnv(k, v string) string {
	c := l.c
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
	case len(matches) == 0 && l.poolNamesUnread():
		// The pool it names may be one the file failed to say.
		return ""
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
			// A pool without a name is reported as such by validation.
			if c.Pools[i].Name != "" {
				pools = append(pools, fmt.Sprintf("%q (%s…)", c.Pools[i].Name, c.Pools[i].EnvPrefix()))
			}
		}
		if len(pools) == 0 {
			return "names no configured pool; no pool has a name"
		}
		return "names no configured pool; the pools are " + strings.Join(pools, ", ")
	}
	m := matches[0]
	f := poolEnvFields[m.field]
	path := fmt.Sprintf("pools[%d].%s", m.pool, f.path)
	if msg := f.apply(&c.Pools[m.pool], v); msg != "" {
		l.unread[path] = true
		return msg
	}
	c.setOrigin(path, k)
	return ""
}

// poolNamesUnread reports whether the file names a pool in a way that could
// not be read, so that which pools exist is not known.
func (l *loader) poolNamesUnread() bool {
	if l.unreadAt("pools") {
		return true
	}
	for i := range l.c.Pools {
		if l.unreadAt(index("pools", i) + ".name") {
			return true
		}
	}
	return false
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
