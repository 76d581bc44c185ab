package config

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const secretToken = "s3cr3t-t0ken-0123456789abcdef"

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ebb.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// plain drops where values came from, so loaded and built configs compare.
func plain(c *Config) *Config {
	cp := *c
	cp.origins = nil
	return &cp
}

// problems returns err's lines, failing unless err is an *Error.
func problems(t *testing.T, err error) []string {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want *config.Error", err, err)
	}
	var lines []string
	for _, p := range ce.Problems {
		lines = append(lines, p.Error())
	}
	var first Problem
	if len(ce.Problems) > 0 && (!errors.As(err, &first) || first != ce.Problems[0]) {
		t.Errorf("errors.As(err, *Problem) = %+v, want the first problem %+v", first, ce.Problems[0])
	}
	if got := strings.Join(lines, "\n"); got != err.Error() {
		t.Errorf("Error() = %q, want the problems one per line: %q", err.Error(), got)
	}
	return lines
}

// wantProblems checks that err lists exactly len(want) problems, the i-th
// starting with want[i].
func wantProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	got := problems(t, err)
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
}

func TestDefault(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	want := &Config{
		Broker:      "sqlite:ebb.db",
		Server:      Server{Listen: "127.0.0.1:8080"},
		Leader:      Leader{TTL: 6 * time.Second, RenewInterval: 2500 * time.Millisecond},
		Maintenance: Maintenance{RescueInterval: 5 * time.Second, CleanupInterval: time.Minute, DeadRetention: 720 * time.Hour},
		Autoscaler:  Autoscaler{ReconcileInterval: 5 * time.Second},
		Pools: []Pool{{
			Name: "default", Queues: []string{"default"}, Target: "local",
			Min: 0, Max: 4, Concurrency: 10, LogDir: "ebb-logs",
			DrainTimeout: 25 * time.Second, StopGrace: 30 * time.Second,
			Policy: Policy{MaxWait: 30 * time.Second, ScaleDownDelay: DelayDerived, IdleBeforeZero: DelayDerived},
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() =\n%#v\nwant\n%#v", c, want)
	}

	for _, tc := range []struct {
		name string
		file string
	}{
		{"no file", ""},
		{"empty file", " \n"},
		{"comments only", "# nothing here\n"},
		{"pools key without value", "pools:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if tc.file != "" {
				path = writeFile(t, tc.file)
			}
			got, err := Load(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(plain(got), Default()) {
				t.Errorf("Load = %#v, want Default()", got)
			}
		})
	}

	p := c.Pools[0]
	if got := p.BacklogPerWorker(); got != 10 {
		t.Errorf("BacklogPerWorker() = %d, want the concurrency 10 when the policy says 0", got)
	}
	p.Policy.BacklogPerWorker = 3
	if got := p.BacklogPerWorker(); got != 3 {
		t.Errorf("BacklogPerWorker() = %d, want 3", got)
	}
}

func TestExampleFileLoads(t *testing.T) {
	t.Parallel()
	c, err := Load("../../ebb.example.yaml", nil)
	if err != nil {
		t.Fatalf("the example file does not load: %v", err)
	}
	// The example documents the defaults by writing them out: everything but
	// the second pool must equal Default(), or the file's comments lie.
	if len(c.Pools) != 2 {
		t.Fatalf("example has %d pools, want 2", len(c.Pools))
	}
	withoutReports := plain(c)
	withoutReports.Pools = c.Pools[:1]
	withoutReports.Schedules = nil // the defaults have none; checked below
	if !reflect.DeepEqual(withoutReports, Default()) {
		t.Errorf("example (without reports) =\n%v\nwant the defaults\n%v", withoutReports, Default())
	}
	if len(c.Schedules) != 2 || c.Schedules[0].Name != "nightly-report" || c.Schedules[0].TZ != "Europe/Berlin" ||
		c.Schedules[1].Every != time.Minute {
		t.Errorf("example schedules = %+v", c.Schedules)
	}
	r := c.Pools[1]
	if r.Name != "reports" || !reflect.DeepEqual(r.Queues, []string{"reports"}) || r.Min != 0 || r.Max != 2 ||
		r.Policy.MaxWait != 2*time.Minute {
		t.Errorf("reports pool = %+v", r)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	// Every field differs from its default.
	const file = `
broker: redis://127.0.0.1:6379/3
server:
  listen: 0.0.0.0:9090
  token: ` + secretToken + `
  read_only: true
leader:
  ttl: 10s
  renew_interval: 3s
maintenance:
  rescue_interval: 7s
  cleanup_interval: 2m
  dead_retention: 48h
autoscaler:
  reconcile_interval: 1s
pools:
  - name: fast
    queues: ["a:3", "b:1"]
    target: local
    min: 1
    max: 8
    concurrency: 50
    command: [./bin/app, worker, --verbose]
    env: {APP_MODE: fast, EMPTY: ""}
    log_dir: /var/log/ebb
    drain_timeout: 5s
    stop_grace: 10s
    policy:
      backlog_per_worker: 100
      max_wait: 5s
      scale_down_delay: 2m
      idle_before_zero: 10m
      max_step: 2
  - name: slow
  - name: remote
    target: ecs
    ecs:
      cluster: prod
      service: arn:aws:ecs:eu-west-1:123456789012:service/prod/ebb
      region: eu-west-1
      endpoint: https://vpce-0abc.ecs.eu-west-1.vpce.amazonaws.com
`
	remote := DefaultPool("remote")
	remote.Target = "ecs"
	remote.ECS = ECS{Cluster: "prod", Service: "arn:aws:ecs:eu-west-1:123456789012:service/prod/ebb", Region: "eu-west-1",
		Endpoint: "https://vpce-0abc.ecs.eu-west-1.vpce.amazonaws.com"}
	want := &Config{
		Broker:      "redis://127.0.0.1:6379/3",
		Server:      Server{Listen: "0.0.0.0:9090", Token: secretToken, ReadOnly: true},
		Leader:      Leader{TTL: 10 * time.Second, RenewInterval: 3 * time.Second},
		Maintenance: Maintenance{RescueInterval: 7 * time.Second, CleanupInterval: 2 * time.Minute, DeadRetention: 48 * time.Hour},
		Autoscaler:  Autoscaler{ReconcileInterval: time.Second},
		Pools: []Pool{{
			Name: "fast", Queues: []string{"a:3", "b:1"}, Target: "local",
			Min: 1, Max: 8, Concurrency: 50,
			Command: []string{"./bin/app", "worker", "--verbose"},
			Env:     map[string]string{"APP_MODE": "fast", "EMPTY": ""},
			LogDir:  "/var/log/ebb", DrainTimeout: 5 * time.Second, StopGrace: 10 * time.Second,
			Policy: Policy{BacklogPerWorker: 100, MaxWait: 5 * time.Second, ScaleDownDelay: 2 * time.Minute,
				IdleBeforeZero: 10 * time.Minute, MaxStep: 2},
		}, DefaultPool("slow"), remote},
	}
	got, err := Load(writeFile(t, file), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plain(got), want) {
		t.Fatalf("Load =\n%#v\nwant\n%#v", plain(got), want)
	}
	if q := got.Pools[0].QueueConfigs(); len(q) != 2 || q[0].Name != "a" || q[0].Weight != 3 || q[1].Name != "b" || q[1].Weight != 1 {
		t.Errorf("QueueConfigs() = %+v", q)
	}

	// Marshalling the Go struct and loading the result gives it back, so the
	// public yaml tags and the file format agree. The token marshals masked,
	// so it goes through the environment.
	out, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(secretToken)) {
		t.Fatalf("marshalled YAML holds the token:\n%s", out)
	}
	var withoutToken bytes.Buffer
	for line := range strings.Lines(string(out)) {
		if !strings.Contains(line, "token:") {
			withoutToken.WriteString(line)
		}
	}
	again, err := Load(writeFile(t, withoutToken.String()), []string{"EBB_TOKEN=" + secretToken})
	if err != nil {
		t.Fatalf("reloading the marshalled config: %v\n%s", err, withoutToken.String())
	}
	if !reflect.DeepEqual(plain(again), want) {
		t.Errorf("reloaded =\n%#v\nwant\n%#v", plain(again), want)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	pool := func(c *Config, name string, edit func(p *Pool)) {
		p := DefaultPool(name)
		if edit != nil {
			edit(&p)
		}
		c.Pools = append(c.Pools, p)
	}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want []string // prefixes of the problems, in order
	}{
		{"valid", func(c *Config) {}, nil},
		{"no pools", func(c *Config) { c.Pools = nil }, nil},
		{"broker empty", func(c *Config) { c.Broker = "" }, []string{"broker: required"}},
		{"broker scheme", func(c *Config) { c.Broker = "mysql://db/x" }, []string{`broker: "mysql://db/x" names no broker`}},
		{"postgres without host", func(c *Config) { c.Broker = "postgres://" }, []string{"broker: \"postgres://\" needs a host and database"}},
		{"sqlite without path", func(c *Config) { c.Broker = "sqlite:" }, []string{"broker: \"sqlite:\" needs a file path"}},
		{"redis without host", func(c *Config) { c.Broker = "redis://" }, []string{"broker: \"redis://\" needs a host"}},
		{"broker password masked", func(c *Config) { c.Broker = "mongo://u:hunter2@h/0" }, []string{`broker: "mongo://u:xxxxx@h/0" names no broker`}},
		{"listen not host:port", func(c *Config) { c.Server.Listen = "8080" }, []string{`server.listen: "8080" is not host:port`}},
		{"listen bad port", func(c *Config) { c.Server.Listen = "127.0.0.1:http" }, []string{`server.listen: port "http" is not a number`}},
		{"listen port too big", func(c *Config) { c.Server.Listen = "127.0.0.1:70000" }, []string{`server.listen: port "70000"`}},
		{"token too short", func(c *Config) { c.Server.Token = "short" }, []string{"server.token: is 5 characters; use at least 16"}},
		{"token with newline", func(c *Config) { c.Server.Token = secretToken + "\n" }, []string{"server.token: contains spaces or control characters"}},
		{"leader ttl zero", func(c *Config) { c.Leader.TTL = 0 }, []string{"leader.ttl: 0s must be positive"}},
		{"renew not under half ttl", func(c *Config) { c.Leader.RenewInterval = 3 * time.Second },
			[]string{"leader.renew_interval: 3s must be less than half of leader.ttl (6s)"}},
		{"renew negative", func(c *Config) { c.Leader.RenewInterval = -time.Second }, []string{"leader.renew_interval: -1s must be positive"}},
		{"maintenance and autoscaler durations", func(c *Config) {
			c.Maintenance = Maintenance{}
			c.Autoscaler.ReconcileInterval = -time.Second
		}, []string{
			"maintenance.rescue_interval: 0s must be positive",
			"maintenance.cleanup_interval: 0s must be positive",
			"maintenance.dead_retention: 0s must be positive",
			"autoscaler.reconcile_interval: -1s must be positive",
		}},
		{"pool name missing", func(c *Config) { c.Pools[0].Name = "" }, []string{"pools[0].name: required"}},
		{"pool name invalid", func(c *Config) { c.Pools[0].Name = "a b" }, []string{`pools[0].name: "a b": use 1–128 characters`}},
		{"pool name too long", func(c *Config) { c.Pools[0].Name = strings.Repeat("x", 129) }, []string{"pools[0].name: "}},
		{"pool names duplicate", func(c *Config) { pool(c, "default", func(p *Pool) { p.Queues = []string{"other"} }) },
			[]string{`pools[1].name: "default" is also the name of pools[0]`}},
		{"pool names share an env prefix", func(c *Config) {
			pool(c, "a-b", nil)
			pool(c, "A.b", nil)
		}, []string{`pools[2].name: "A.b" and pools[1] ("a-b") would share the variables EBB_POOL_A_B_*`}},
		{"queues empty", func(c *Config) { c.Pools[0].Queues = nil }, []string{"pools[0].queues: empty"}},
		{"queue invalid", func(c *Config) { c.Pools[0].Queues = []string{"ok", "no/slash"} }, []string{`pools[0].queues[1]: "no/slash"`}},
		{"queue bad weight", func(c *Config) { c.Pools[0].Queues = []string{"a:x"} }, []string{`pools[0].queues[0]: "a:x": write name or name:weight`}},
		{"queue zero weight", func(c *Config) { c.Pools[0].Queues = []string{"a:0"} }, []string{`pools[0].queues[0]: "a:0"`}},
		{"queue listed twice", func(c *Config) { c.Pools[0].Queues = []string{"a", "b", "a"} }, []string{`pools[0].queues[2]: "a" is listed twice`}},
		{"weights mixed", func(c *Config) { c.Pools[0].Queues = []string{"a:2", "b"} }, []string{"pools[0].queues: some queues have a weight"}},
		{"queue in two pools", func(c *Config) { pool(c, "other", func(p *Pool) { p.Queues = []string{"x:1", "default:2"} }) },
			[]string{`pools[1].queues[1]: queue "default" is already served by pools[0] ("default")`}},
		{"target kubernetes needs a workload", func(c *Config) { c.Pools[0].Target = "kubernetes" }, []string{"pools[0].kubernetes.deployment: required for target kubernetes"}},
		{"kubernetes pool", func(c *Config) {
			c.Pools[0].Target = "kubernetes"
			c.Pools[0].Kubernetes = Kubernetes{Namespace: "jobs", Deployment: "ebb-worker-default", KEDA: true}
			c.Pools[0].DrainTimeout = time.Minute // the pod's grace period bounds it, not stop_grace
		}, nil},
		{"kubernetes pool with bad names and both workloads", func(c *Config) {
			c.Pools[0].Target = "kubernetes"
			c.Pools[0].Command = []string{"x"}
			c.Pools[0].Kubernetes = Kubernetes{Namespace: "Jobs", Deployment: "a_b", StatefulSet: "s"}
		}, []string{
			"pools[0].kubernetes.statefulset: set deployment or statefulset, not both",
			`pools[0].kubernetes.deployment: "a_b" is not a Kubernetes object name`,
			`pools[0].kubernetes.namespace: "Jobs" is not a Kubernetes namespace name`,
			"pools[0].command: the pod template says what the pods run",
		}},
		{"kubernetes block on a local pool", func(c *Config) { c.Pools[0].Kubernetes.Deployment = "w" }, []string{"pools[0].kubernetes: only a kubernetes pool uses it"}},
		{"target ecs needs cluster, service and region", func(c *Config) { c.Pools[0].Target = "ecs" }, []string{
			"pools[0].ecs.cluster: required for target ecs",
			"pools[0].ecs.service: required for target ecs",
			"pools[0].ecs.region: required for target ecs (e.g. eu-west-1), unless AWS_REGION or AWS_DEFAULT_REGION is set",
		}},
		{"ecs pool", func(c *Config) {
			c.Pools[0].Target = "ecs"
			c.Pools[0].ECS = ECS{Cluster: "arn:aws:ecs:us-gov-west-1:123456789012:cluster/prod",
				Service: "arn:aws:ecs:us-gov-west-1:123456789012:service/prod/ebb", Region: "us-gov-west-1",
				Endpoint: "http://127.0.0.1:4566"}
			c.Pools[0].LogDir = "" // not used by ecs pools
		}, nil},
		{"ecs pool with command and env", func(c *Config) {
			c.Pools[0].Target = "ecs"
			c.Pools[0].ECS = ECS{Cluster: "prod", Service: "ebb", Region: "eu-west-1"}
			c.Pools[0].Command = []string{"./app", "worker"}
			c.Pools[0].Env = map[string]string{"K": "v"}
		}, []string{
			"pools[0].command: ECS runs the task definition's command; leave command out of an ecs pool",
			"pools[0].env: ECS tasks take their environment from the task definition",
		}},
		{"ecs values", func(c *Config) {
			c.Pools[0].Target = "ecs"
			c.Pools[0].ECS = ECS{Cluster: "my cluster", Service: "ebb\n", Region: "EU-West-1", Endpoint: "ecs.eu-west-1.amazonaws.com"}
		}, []string{
			`pools[0].ecs.cluster: "my cluster" contains spaces or control characters`,
			`pools[0].ecs.service: "ebb\n" contains spaces or control characters`,
			`pools[0].ecs.region: "EU-West-1" is not an AWS region name (e.g. eu-west-1)`,
			`pools[0].ecs.endpoint: "ecs.eu-west-1.amazonaws.com" is not an http(s) URL`,
		}},
		{"ecs section on a local pool", func(c *Config) { c.Pools[0].ECS.Cluster = "prod" },
			[]string{`pools[0].ecs: only an ecs pool uses it, and target is "local"; set target: ecs or remove ecs`}},
		{"target unknown", func(c *Config) { c.Pools[0].Target = "nomad" }, []string{`pools[0].target: unknown target "nomad"`}},
		{"target empty", func(c *Config) { c.Pools[0].Target = "" }, []string{"pools[0].target: empty"}},
		{"max below min", func(c *Config) { c.Pools[0].Min, c.Pools[0].Max = 2, 0 }, []string{"pools[0].max: 0 is less than min 2"}},
		{"max zero", func(c *Config) { c.Pools[0].Max = 0 }, []string{"pools[0].max: 0 must be at least 1"}},
		{"min negative", func(c *Config) { c.Pools[0].Min = -1 }, []string{"pools[0].min: -1 is negative"}},
		{"min negative and max zero", func(c *Config) { c.Pools[0].Min, c.Pools[0].Max = -1, 0 },
			[]string{"pools[0].min: -1 is negative", "pools[0].max: 0 must be at least 1"}},
		{"min equals max", func(c *Config) { c.Pools[0].Min, c.Pools[0].Max = 3, 3 }, nil},
		{"concurrency zero", func(c *Config) { c.Pools[0].Concurrency = 0 }, []string{"pools[0].concurrency: 0 must be at least 1"}},
		{"command empty program", func(c *Config) { c.Pools[0].Command = []string{"", "worker"} }, []string{"pools[0].command[0]: empty"}},
		{"env bad name", func(c *Config) { c.Pools[0].Env = map[string]string{"A=B": "x"} }, []string{`pools[0].env.A=B: "A=B" is not a valid variable name`}},
		{"env NUL value", func(c *Config) { c.Pools[0].Env = map[string]string{"K": "a\x00b"} }, []string{"pools[0].env.K: the value contains a NUL byte"}},
		{"log dir empty", func(c *Config) { c.Pools[0].LogDir = "" }, []string{"pools[0].log_dir: empty"}},
		{"drain timeout zero", func(c *Config) { c.Pools[0].DrainTimeout = 0 }, []string{"pools[0].drain_timeout: 0s must be positive"}},
		{"stop grace not longer than drain", func(c *Config) { c.Pools[0].StopGrace = 25 * time.Second },
			[]string{"pools[0].stop_grace: 25s must be longer than drain_timeout (25s)"}},
		{"policy", func(c *Config) {
			c.Pools[0].Policy = Policy{BacklogPerWorker: -1, MaxWait: 0, ScaleDownDelay: -time.Second, IdleBeforeZero: 0, MaxStep: -2}
		}, []string{
			"pools[0].policy.backlog_per_worker: -1 is negative",
			"pools[0].policy.max_wait: 0s must be positive",
			"pools[0].policy.scale_down_delay: -1s must be positive",
			"pools[0].policy.idle_before_zero: 0s must be positive",
			"pools[0].policy.max_step: -2 is negative",
		}},
		{"several problems at once, in document order", func(c *Config) {
			c.Broker = ""
			c.Leader.RenewInterval = 5 * time.Second
			pool(c, "reports", func(p *Pool) { p.Min, p.Max = 2, 0 })
			pool(c, "bad name!", func(p *Pool) { p.Queues = []string{"reports"}; p.Concurrency = -1 })
		}, []string{
			"broker: required",
			"leader.renew_interval: 5s must be less than half",
			"pools[1].max: 0 is less than min 2",
			`pools[2].name: "bad name!"`,
			`pools[2].queues[0]: queue "reports" is already served by pools[1] ("reports")`,
			"pools[2].concurrency: -1 must be at least 1",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tc.edit(c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			wantProblems(t, err, tc.want...)
			// A Config built in Go has no origins to report.
			if strings.Contains(err.Error(), "(default)") {
				t.Errorf("problems of a Go-built config name an origin: %v", err)
			}
		})
	}
}

func TestTokenRequiredOffLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listen   string
		loopback bool
	}{
		{"127.0.0.1:8080", true},
		{"127.3.2.1:8080", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"LocalHost:0", true},
		{"[::ffff:127.0.0.1]:8080", true},
		{"0.0.0.0:8080", false},
		{":8080", false},
		{"[::]:8080", false},
		{"10.0.0.5:8080", false},
		{"ebb.internal:8080", false}, // names are not resolved
	} {
		t.Run(tc.listen, func(t *testing.T) {
			t.Parallel()
			c := Default()
			c.Server.Listen = tc.listen
			err := c.Validate()
			if tc.loopback {
				if err != nil {
					t.Fatalf("Validate() = %v, want no token needed on loopback", err)
				}
			} else {
				wantProblems(t, err, "server.token: required when server.listen ("+tc.listen+") is not a loopback address")
			}
			c.Server.Token = secretToken
			if err := c.Validate(); err != nil {
				t.Fatalf("with a token: %v", err)
			}
		})
	}

	// Through Load: the file listens everywhere and EBB_TOKEN supplies the
	// token, as in production.
	path := writeFile(t, "server:\n  listen: :8080\n")
	_, err := Load(path, nil)
	wantProblems(t, err, "server.token: required when server.listen (:8080)")
	if _, err := Load(path, []string{"EBB_TOKEN=" + secretToken}); err != nil {
		t.Fatalf("with EBB_TOKEN: %v", err)
	}
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		file string
		want []string
	}{
		{"unknown top-level key", "brokr: sqlite:x.db\n",
			[]string{"brokr: unknown key; use one of broker, server, leader, maintenance, autoscaler, pools, schedules (line 1)"}},
		{"unknown nested key names its path and line", `
pools:
  - name: a
    policy:
      max_wiat: 10s
`, []string{"pools[0].policy.max_wiat: unknown key; use one of backlog_per_worker, max_wait, scale_down_delay, idle_before_zero, max_step (line 5)"}},
		{"unknown keys all reported", "server:\n  lisen: :1\n  tokn: x\n",
			[]string{"server.lisen: unknown key", "server.tokn: unknown key"}},
		{"bad duration", "pools:\n  - name: a\n    policy:\n      max_wait: 3x\n",
			[]string{`pools[0].policy.max_wait: "3x" is not a duration (use e.g. 30s, 5m) (line 4)`}},
		{"duration without unit", "leader:\n  ttl: 30\n", []string{`leader.ttl: "30" is not a duration (use e.g. 30s, 5m) (line 2)`}},
		{"bad durations all reported", "maintenance:\n  rescue_interval: soon\npools:\n  - name: a\n    stop_grace: 1y\n",
			[]string{`maintenance.rescue_interval: "soon" is not a duration`, `pools[0].stop_grace: "1y" is not a duration`}},
		{"shape problems all reported together", `
brokr: x
pools:
  - name: a
    max: lots
    policy:
      max_wait: 3x
`, []string{
			"brokr: unknown key",
			`pools[0].max: expected an integer, got "lots" (line 5)`,
			`pools[0].policy.max_wait: "3x" is not a duration (use e.g. 30s, 5m) (line 7)`,
		}},
		{"integer expected", "pools:\n  - name: a\n    max: many\n", []string{`pools[0].max: expected an integer, got "many" (line 3)`}},
		{"list expected", "pools:\n  - name: a\n    queues: a,b\n", []string{`pools[0].queues: expected a list of strings, got "a,b" (line 3)`}},
		{"mapping expected", "server: 8080\n", []string{`server: expected a mapping, got "8080" (line 1)`}},
		{"pools must be a list", "pools:\n  name: a\n", []string{"pools: expected a list of mappings, got a mapping (line 2)"}},
		{"bool expected", "server:\n  read_only: [x]\n", []string{"server.read_only: expected true or false, got a list (line 2)"}},
		{"top level not a mapping", "- a\n- b\n", []string{"(top level): expected a mapping, got a list (line 1)"}},
		{"key set twice", "broker: sqlite:a.db\nbroker: sqlite:b.db\n", []string{"broker: set twice (first at line 1) (line 2)"}},
		{"env key set twice", "pools:\n  - name: a\n    env:\n      K: x\n      K: y\n", []string{"pools[0].env.K: set twice (first at line 4) (line 5)"}},
		{"syntax error", "server:\n  listen: [\n", []string{"invalid YAML: "}},
		{"tab indentation", "server:\n\tlisten: x\n", []string{"invalid YAML: line 2: found character that cannot start any token"}},
		{"second document", "broker: sqlite:a.db\n---\nbroker: sqlite:b.db\n", []string{"a second YAML document starts at line 2"}},
		{"explicit zero is validated, not defaulted", "pools:\n  - name: a\n    max: 0\n    concurrency: 0\n",
			[]string{"pools[0].max: 0 must be at least 1 (line 3)", "pools[0].concurrency: 0 must be at least 1 (line 4)"}},
		{"validation names the line", "pools:\n  - name: a\n  - name: b\n    queues: [c, a]\n",
			[]string{`pools[1].queues[1]: queue "a" is already served by pools[0] ("a"); a queue belongs to one pool (line 4)`}},
		{"validation says when a value is the default", "pools:\n  - name: a\n    min: 6\n",
			[]string{"pools[0].max: 4 is less than min 6 (default)"}},
		{"missing pool name", "pools:\n  - max: 2\n", []string{"pools[0].name: required", "pools[0].queues: empty"}},
		{"explicitly empty queues", "pools:\n  - name: a\n    queues: []\n", []string{"pools[0].queues: empty; list at least one queue (the default is the pool's name) (line 3)"}},
		{"unknown key under ecs", `
pools:
  - name: remote
    target: ecs
    ecs:
      cluster: prod
      service: ebb
      regoin: eu-west-1
      region: eu-west-1
`, []string{"pools[0].ecs.regoin: unknown key; use one of cluster, service, region, endpoint (line 8)"}},
		{"ecs must be a mapping", "pools:\n  - name: remote\n    target: ecs\n    ecs: prod\n",
			[]string{`pools[0].ecs: expected a mapping, got "prod" (line 4)`}},
		{"missing ecs values point at the ecs section", `
pools:
  - name: remote
    target: ecs
    ecs:
      region: eu-west-1
`, []string{
			"pools[0].ecs.cluster: required for target ecs: the name or ARN of the ECS cluster (line 6)",
			"pools[0].ecs.service: required for target ecs: the name or ARN of the ECS service whose tasks run ebb worker for this pool (line 6)",
		}},
		{"without an ecs section they point at the pool", "pools:\n  - name: remote\n    target: ecs\n", []string{
			"pools[0].ecs.cluster: required for target ecs: the name or ARN of the ECS cluster (line 2)",
			"pools[0].ecs.service: required for target ecs",
			"pools[0].ecs.region: required for target ecs (e.g. eu-west-1), unless AWS_REGION or AWS_DEFAULT_REGION is set (line 2)",
		}},
		{"ecs pool with a command", `
pools:
  - name: remote
    target: ecs
    ecs: {cluster: prod, service: ebb, region: eu-west-1}
    command: [./app, worker]
`, []string{"pools[0].command: ECS runs the task definition's command; leave command out of an ecs pool (line 6)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(writeFile(t, tc.file), nil)
			wantProblems(t, err, tc.want...)
		})
	}

	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want os.ErrNotExist", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Parallel()
	const file = `
pools:
  - name: default
  - name: nightly-reports.v2
    queues: [reports]
    max: 2
`
	for _, tc := range []struct {
		name  string
		env   []string
		check func(t *testing.T, c *Config)
		want  []string // problems; nil means Load succeeds
	}{
		{name: "broker, listen, token, read_only", env: []string{
			"EBB_BROKER=redis://127.0.0.1:6379/2",
			"EBB_LISTEN=0.0.0.0:9000",
			"EBB_TOKEN=" + secretToken,
			"EBB_READ_ONLY=true",
		}, check: func(t *testing.T, c *Config) {
			if c.Broker != "redis://127.0.0.1:6379/2" || c.Server.Listen != "0.0.0.0:9000" ||
				string(c.Server.Token) != secretToken || !c.Server.ReadOnly {
				t.Errorf("got broker %q listen %q token set %v read_only %v", c.Broker, c.Server.Listen, c.Server.Token != "", c.Server.ReadOnly)
			}
		}},
		{name: "pool fields", env: []string{
			"EBB_POOL_NIGHTLY_REPORTS_V2_MIN=1",
			"EBB_POOL_NIGHTLY_REPORTS_V2_MAX=6",
			"EBB_POOL_NIGHTLY_REPORTS_V2_CONCURRENCY=3",
			"EBB_POOL_NIGHTLY_REPORTS_V2_QUEUES= reports:2 , archive:1,",
			"EBB_POOL_NIGHTLY_REPORTS_V2_MAX_WAIT=2m",
			"EBB_POOL_NIGHTLY_REPORTS_V2_SCALE_DOWN_DELAY=90s",
			"EBB_POOL_NIGHTLY_REPORTS_V2_IDLE_BEFORE_ZERO=10m",
			"EBB_POOL_NIGHTLY_REPORTS_V2_BACKLOG_PER_WORKER=7",
			"EBB_POOL_NIGHTLY_REPORTS_V2_MAX_STEP=2",
			"EBB_POOL_DEFAULT_MAX=9",
		}, check: func(t *testing.T, c *Config) {
			p := c.Pools[1]
			want := DefaultPool("nightly-reports.v2")
			want.Queues = []string{"reports:2", "archive:1"}
			want.Min, want.Max, want.Concurrency = 1, 6, 3
			want.Policy = Policy{BacklogPerWorker: 7, MaxWait: 2 * time.Minute, ScaleDownDelay: 90 * time.Second,
				IdleBeforeZero: 10 * time.Minute, MaxStep: 2}
			if !reflect.DeepEqual(p, want) {
				t.Errorf("pool =\n%+v\nwant\n%+v", p, want)
			}
			if c.Pools[0].Max != 9 {
				t.Errorf("default pool max = %d, want 9", c.Pools[0].Max)
			}
		}},
		{name: "empty values count as unset", env: []string{"EBB_BROKER=", "EBB_POOL_DEFAULT_MAX=", "EBB_POOL_NOPE_MAX="},
			check: func(t *testing.T, c *Config) {
				if c.Broker != BrokerDefault || c.Pools[0].Max != MaxDefault {
					t.Errorf("broker %q max %d, want the defaults", c.Broker, c.Pools[0].Max)
				}
			}},
		{name: "first occurrence wins", env: []string{"EBB_POOL_DEFAULT_MAX=5", "EBB_POOL_DEFAULT_MAX=6"},
			check: func(t *testing.T, c *Config) {
				if c.Pools[0].Max != 5 {
					t.Errorf("max = %d, want 5", c.Pools[0].Max)
				}
			}},
		{name: "other variables are ignored", env: []string{"EBB_TEST_REDIS_URL=redis://x", "PATH=/bin", "EBB_POOLX=1", "malformed"}},
		{name: "unknown pool", env: []string{"EBB_POOL_REPORTS_MAX=3"},
			want: []string{`EBB_POOL_REPORTS_MAX: names no configured pool; the pools are "default" (EBB_POOL_DEFAULT_…), "nightly-reports.v2" (EBB_POOL_NIGHTLY_REPORTS_V2_…)`}},
		{name: "unknown field", env: []string{"EBB_POOL_DEFAULT_MAXX=3"},
			want: []string{`EBB_POOL_DEFAULT_MAXX: unknown field MAXX for pool "default"; use EBB_POOL_DEFAULT_ followed by one of MIN, MAX,`}},
		{name: "field not overridable", env: []string{"EBB_POOL_DEFAULT_TARGET=ecs"},
			want: []string{`EBB_POOL_DEFAULT_TARGET: unknown field TARGET`}},
		{name: "bad values, all reported", env: []string{
			"EBB_READ_ONLY=yes please",
			"EBB_POOL_DEFAULT_MIN=one",
			"EBB_POOL_DEFAULT_MAX_WAIT=3x",
			"EBB_POOL_DEFAULT_IDLE_BEFORE_ZERO=60",
		}, want: []string{
			`EBB_POOL_DEFAULT_IDLE_BEFORE_ZERO: "60" is not a duration (use e.g. 30s, 5m)`,
			`EBB_POOL_DEFAULT_MAX_WAIT: "3x" is not a duration (use e.g. 30s, 5m)`,
			`EBB_POOL_DEFAULT_MIN: "one" is not an integer`,
			`EBB_READ_ONLY: "yes please" is not a boolean`,
		}},
		{name: "validation names the variable", env: []string{"EBB_POOL_NIGHTLY_REPORTS_V2_MIN=3", "EBB_LISTEN=0.0.0.0:80", "EBB_TOKEN=short"},
			want: []string{
				"server.token: is 5 characters; use at least 16 (e.g. `openssl rand -hex 32`) (from EBB_TOKEN)",
				"pools[1].max: 2 is less than min 3 (line 6)",
			}},
		{name: "overridden queues take the variable's origin", env: []string{"EBB_POOL_NIGHTLY_REPORTS_V2_QUEUES=default"},
			want: []string{`pools[1].queues[0]: queue "default" is already served by pools[0] ("default"); a queue belongs to one pool (from EBB_POOL_NIGHTLY_REPORTS_V2_QUEUES)`}},
		{name: "overridden max takes the variable's origin", env: []string{"EBB_POOL_NIGHTLY_REPORTS_V2_MAX=0"},
			want: []string{"pools[1].max: 0 must be at least 1 (from EBB_POOL_NIGHTLY_REPORTS_V2_MAX)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(writeFile(t, file), tc.env)
			if tc.want != nil {
				wantProblems(t, err, tc.want...)
				if strings.Contains(err.Error(), "short") {
					t.Errorf("a problem quotes the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}

	t.Run("without a file", func(t *testing.T) {
		t.Parallel()
		c, err := Load("", []string{"EBB_POOL_DEFAULT_MAX=2", "EBB_BROKER=sqlite:other.db"})
		if err != nil {
			t.Fatal(err)
		}
		if c.Pools[0].Max != 2 || c.Broker != "sqlite:other.db" {
			t.Errorf("max %d broker %q", c.Pools[0].Max, c.Broker)
		}
	})
	t.Run("no pools", func(t *testing.T) {
		t.Parallel()
		_, err := Load(writeFile(t, "pools: []\n"), []string{"EBB_POOL_DEFAULT_MAX=2"})
		wantProblems(t, err, "EBB_POOL_DEFAULT_MAX: no pools are configured")
	})
	t.Run("no pool has a name", func(t *testing.T) {
		t.Parallel()
		_, err := Load(writeFile(t, "pools:\n  - max: 2\n"), []string{"EBB_POOL_A_MAX=3"})
		wantProblems(t, err, "EBB_POOL_A_MAX: names no configured pool; no pool has a name",
			"pools[0].name: required: 1–128 characters from [A-Za-z0-9_.:-] (line 2)", "pools[0].queues: empty")
	})
	t.Run("ambiguous pool", func(t *testing.T) {
		t.Parallel()
		_, err := Load(writeFile(t, "pools:\n  - name: a-b\n  - name: a.b\n"), []string{"EBB_POOL_A_B_MAX=2"})
		wantProblems(t, err, `EBB_POOL_A_B_MAX: matches more than one pool ("a-b", "a.b")`,
			`pools[1].name: "a.b" and pools[0] ("a-b") would share the variables EBB_POOL_A_B_*`)
	})
}

func TestECSPool(t *testing.T) {
	t.Parallel()
	const file = `
pools:
  - name: local
  - name: remote-v2
    target: ecs
    max: 20
    ecs:
      cluster: prod
      service: ebb-workers
`
	for _, tc := range []struct {
		name   string
		file   string // default: file
		env    []string
		want   ECS // of remote-v2
		origin string
		probs  []string
	}{
		{name: "region from AWS_REGION", env: []string{"AWS_REGION=eu-west-1", "AWS_DEFAULT_REGION=us-east-1"},
			want: ECS{Cluster: "prod", Service: "ebb-workers", Region: "eu-west-1"}, origin: "from AWS_REGION"},
		{name: "region from AWS_DEFAULT_REGION", env: []string{"AWS_DEFAULT_REGION=us-east-1"},
			want: ECS{Cluster: "prod", Service: "ebb-workers", Region: "us-east-1"}, origin: "from AWS_DEFAULT_REGION"},
		{name: "an empty AWS_REGION counts as unset, as for the SDK", env: []string{"AWS_REGION=", "AWS_REGION=ap-south-1", "AWS_DEFAULT_REGION=us-east-1"},
			want: ECS{Cluster: "prod", Service: "ebb-workers", Region: "us-east-1"}, origin: "from AWS_DEFAULT_REGION"},
		{name: "the file's region wins", file: file + "      region: eu-central-1\n", env: []string{"AWS_REGION=eu-west-1"},
			want: ECS{Cluster: "prod", Service: "ebb-workers", Region: "eu-central-1"}, origin: "line 10"},
		{name: "EBB_POOL_ variables win", env: []string{
			"AWS_REGION=eu-west-1",
			"EBB_POOL_REMOTE_V2_ECS_CLUSTER=staging",
			"EBB_POOL_REMOTE_V2_ECS_SERVICE=arn:aws:ecs:ca-central-1:123456789012:service/staging/ebb",
			"EBB_POOL_REMOTE_V2_ECS_REGION=ca-central-1",
			"EBB_POOL_REMOTE_V2_ECS_ENDPOINT=http://127.0.0.1:4566",
		}, want: ECS{Cluster: "staging", Service: "arn:aws:ecs:ca-central-1:123456789012:service/staging/ebb", Region: "ca-central-1",
			Endpoint: "http://127.0.0.1:4566"}, origin: "from EBB_POOL_REMOTE_V2_ECS_REGION"},
		{name: "no region anywhere", env: []string{"AWS_PROFILE=prod"},
			probs: []string{"pools[1].ecs.region: required for target ecs (e.g. eu-west-1), unless AWS_REGION or AWS_DEFAULT_REGION is set (line 8)"}},
		{name: "a bad region names its variable", env: []string{"AWS_REGION=EU West"},
			probs: []string{`pools[1].ecs.region: "EU West" is not an AWS region name (e.g. eu-west-1) (from AWS_REGION)`}},
		{name: "a variable emptying the cluster counts as unset", env: []string{"AWS_REGION=eu-west-1", "EBB_POOL_REMOTE_V2_ECS_CLUSTER="},
			want: ECS{Cluster: "prod", Service: "ebb-workers", Region: "eu-west-1"}, origin: "from AWS_REGION"},
		{name: "ecs variables on a local pool", env: []string{"EBB_POOL_LOCAL_ECS_CLUSTER=prod", "AWS_REGION=eu-west-1"},
			probs: []string{`pools[0].ecs: only an ecs pool uses it, and target is "local"; set target: ecs or remove ecs (default)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(writeFile(t, cmp.Or(tc.file, file)), tc.env)
			if tc.probs != nil {
				wantProblems(t, err, tc.probs...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := c.Pools[1]
			if p.Target != TargetECS || p.Max != 20 || p.ECS != tc.want {
				t.Errorf("pool = %+v, want target ecs, max 20, ecs %+v", p, tc.want)
			}
			if got := c.origin("pools[1].ecs.region"); got != tc.origin {
				t.Errorf("region's origin = %q, want %q", got, tc.origin)
			}
			// The region is only filled in for ecs pools.
			if c.Pools[0].ECS != (ECS{}) {
				t.Errorf("local pool ecs = %+v", c.Pools[0].ECS)
			}
		})
	}
}

// TestExampleECSPool loads the example file's commented ecs pool with its
// comment marks taken off, so that the example stays valid.
func TestExampleECSPool(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../ebb.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pool []string
	in := false
	for line := range strings.Lines(string(data)) {
		switch {
		case strings.HasPrefix(line, "  # - name: "):
			in = true
		case in && !strings.HasPrefix(line, "  #"):
			in = false
		}
		if in {
			pool = append(pool, "  "+strings.TrimPrefix(line, "  # "))
		}
	}
	if len(pool) < 5 {
		t.Fatalf("no commented ecs pool (lines starting \"  # - name: \") in the example:\n%s", strings.Join(pool, ""))
	}
	c, err := Load(writeFile(t, "pools:\n"+strings.Join(pool, "")), nil)
	if err != nil {
		t.Fatalf("the example's ecs pool does not load: %v\n%s", err, strings.Join(pool, ""))
	}
	if p := c.Pools[0]; p.Target != TargetECS || p.ECS.Cluster == "" || p.ECS.Service == "" || p.ECS.Region == "" {
		t.Errorf("example ecs pool = %+v", p)
	}
}

func TestRedaction(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Broker = "redis://user:brokerpass@127.0.0.1:6379/0"
	c.Server.Listen = "0.0.0.0:8080"
	c.Server.Token = secretToken
	c.Pools[0].Env = map[string]string{"DATABASE_URL": "postgres://app:dbpass@db/app"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	secrets := []string{secretToken, "brokerpass", "dbpass"}

	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("config", "config", c, "value", *c, "token", c.Server.Token)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "config", c, "value", *c, "server", c.Server)
	jsonServer, err := json.Marshal(c.Server)
	if err != nil {
		t.Fatal(err)
	}
	yamlServer, err := yaml.Marshal(c.Server)
	if err != nil {
		t.Fatal(err)
	}
	redacted := c.Redacted()
	outputs := map[string]string{
		"String":        c.String(),
		"%v pointer":    fmt.Sprintf("%v", c),
		"%+v value":     fmt.Sprintf("%+v", *c),
		"%v server":     fmt.Sprintf("%+v", c.Server),
		"%#v server":    fmt.Sprintf("%#v", c.Server),
		"slog text":     text.String(),
		"slog json":     js.String(),
		"json server":   string(jsonServer),
		"yaml server":   string(yamlServer),
		"Redacted %#v":  fmt.Sprintf("%#v", *redacted),
		"Redacted json": mustJSON(t, redacted),
	}
	for name, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s shows %q:\n%s", name, s, out)
			}
		}
	}
	if !strings.Contains(c.String(), "token: xxxxx") || !strings.Contains(c.String(), "redis://user:xxxxx@127.0.0.1:6379/0") ||
		!strings.Contains(c.String(), "DATABASE_URL: xxxxx") {
		t.Errorf("String() does not show what is masked:\n%s", c.String())
	}

	// Redacted is a copy: the original keeps its secrets.
	redacted.Pools[0].Env["X"] = "y"
	redacted.Pools[0].Queues[0] = "changed"
	if string(c.Server.Token) != secretToken || c.Broker != "redis://user:brokerpass@127.0.0.1:6379/0" ||
		c.Pools[0].Env["DATABASE_URL"] != "postgres://app:dbpass@db/app" || len(c.Pools[0].Env) != 1 || c.Pools[0].Queues[0] != "default" {
		t.Errorf("Redacted changed the original: %#v", c.Pools[0])
	}
	if Secret("").String() != "" {
		t.Error("an empty secret should print empty, so that 'no token' is visible")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSchedulesInFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `
schedules:
  - name: nightly
    cron: "30 2 * * *"
    tz: Europe/Berlin
    kind: report
    args: {day: yesterday}
    queue: reports
    priority: low
  - name: tick
    every: 10s
    kind: noop
    catch_up: skip
`)
	c, err := Load(good, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.Schedules) != 2 || c.Schedules[0].TZ != "Europe/Berlin" || c.Schedules[1].Every != 10*time.Second {
		t.Fatalf("schedules = %+v", c.Schedules)
	}
	rec, err := c.Schedules[0].Record(time.Now())
	if err != nil || string(rec.Args) != `{"day":"yesterday"}` || rec.Queue != "reports" || rec.Priority != 3 {
		t.Fatalf("Record = %+v, %v", rec, err)
	}

	bad := write("bad.yaml", `
schedules:
  - name: a
    cron: "61 * * * *"
    kind: x
  - name: a
    every: 10s
  - name: both
    cron: "* * * * *"
    every: 1m
    kind: x
  - name: spaced
    every: 1m
    kind: "two words"
`)
	_, err = Load(bad, nil)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load(bad) = %v, want *Error", err)
	}
	for _, want := range []string{
		`schedules[0]: schedule "a": cron "61 * * * *": minute 61 out of range 0-59`,
		`schedules[1].name: "a" is also the name of schedules[0]`,
		`schedules[1].kind: missing`,
		`schedules[2]: schedule "both"`,
		`schedules[3].kind: "two words": use 1–128 bytes of UTF-8 without control characters or spaces`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors %q do not contain %q", err, want)
		}
	}
}

func TestLoadReportsEverythingAtOnce(t *testing.T) {
	t.Parallel()
	// Problems reading the file, problems reading the variables and
	// validation problems, each with its line, in one run: the file's parse
	// problems in document order, then the variables', then validation's.
	// Values that could not be read are not validated as well: ttl, the
	// third pool's name (its queues default to it) and the schedule's
	// interval would otherwise each add a problem about a default.
	const file = `brokr: sqlite:x.db
leader:
  ttl: soon
  renew_interval: 5s
pools:
  - name: a
    max: 0
    concurrency: lots
    queues: []
  - queues: [b]
    min: -1
  - name: [c]
schedules:
  - name: tick
    every: 3x
    kind: noop
`
	_, err := Load(writeFile(t, file), []string{"EBB_POOL_A_MIN=x", "EBB_TOKEN=short"})
	wantProblems(t, err,
		"brokr: unknown key; use one of broker, server, leader, maintenance, autoscaler, pools, schedules (line 1)",
		`leader.ttl: "soon" is not a duration (use e.g. 30s, 5m) (line 3)`,
		`pools[0].concurrency: expected an integer, got "lots" (line 8)`,
		`pools[2].name: expected a string, got a list (line 12)`,
		`schedules[0].every: "3x" is not a duration (use e.g. 30s, 5m) (line 15)`,
		`EBB_POOL_A_MIN: "x" is not an integer`,
		"server.token: is 5 characters; use at least 16 (e.g. `openssl rand -hex 32`) (from EBB_TOKEN)",
		"pools[0].queues: empty; list at least one queue (the default is the pool's name) (line 9)",
		"pools[0].max: 0 must be at least 1 (line 7)",
		"pools[1].name: required: 1–128 characters from [A-Za-z0-9_.:-] (line 10)",
		"pools[1].min: -1 is negative (line 11)",
	)
	got := problems(t, err)
	if got[len(got)-1] != "pools[1].min: -1 is negative (line 11)" {
		t.Errorf("last problem = %q, want it whole", got[len(got)-1])
	}
}

func TestLoadSkipsUnreadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		file string
		env  []string
		want []string
	}{
		{"not checked against another field", "pools:\n  - name: a\n    drain_timeout: soon\n    stop_grace: 10s\n", nil,
			[]string{`pools[0].drain_timeout: "soon" is not a duration (use e.g. 30s, 5m) (line 3)`}},
		{"min unread, max still checked", "pools:\n  - name: a\n    min: [1]\n    max: -1\n", nil,
			[]string{"pools[0].min: expected an integer, got a list (line 3)", "pools[0].max: -1 must be at least 1 (line 4)"}},
		{"a list with a bad element", "pools:\n  - name: a\n    queues: [a, {b: 1}]\n", nil,
			[]string{"pools[0].queues[1]: expected a string, got a mapping (line 3)"}},
		{"an empty list element", "pools:\n  - name: a\n    command:\n      - ./app\n      -\n", nil,
			[]string{"pools[0].command[1]: expected a string, got nothing (line 5)"}},
		{"a variable's value is checked where the file's was unreadable", "pools:\n  - name: a\n    max: lots\n", []string{"EBB_POOL_A_MAX=0"},
			[]string{`pools[0].max: expected an integer, got "lots" (line 3)`, "pools[0].max: 0 must be at least 1 (from EBB_POOL_A_MAX)"}},
		{"an unreadable variable's field is not checked", "pools:\n  - name: a\n    min: 6\n    max: 8\n", []string{"EBB_POOL_A_MAX=lots"},
			[]string{`EBB_POOL_A_MAX: "lots" is not an integer`}},
		// Which pools the file meant is unknown, so a pool variable cannot
		// be said to match none.
		{"pool variables when the pools are unreadable", "pools:\n  name: a\n", []string{"EBB_POOL_A_MAX=3"},
			[]string{"pools: expected a list of mappings, got a mapping (line 2)"}},
		{"pool variables when a pool's name is unreadable", "pools:\n  - name: {a: 1}\n", []string{"EBB_POOL_A_MAX=3"},
			[]string{"pools[0].name: expected a string, got a mapping (line 2)"}},
		{"pool variables when the file is not YAML", "pools: [\n", []string{"EBB_POOL_A_MAX=3", "EBB_READ_ONLY=maybe"},
			[]string{"invalid YAML: ", `EBB_READ_ONLY: "maybe" is not a boolean`}},
		{"schedule timing unread", "schedules:\n  - name: s\n    at: tomorrow\n    kind: x\n", nil,
			[]string{`schedules[0].at: "tomorrow" is not an RFC 3339 time`}},
		{"a key set twice is not validated", "pools:\n  - name: a\n    max: 0\n    max: 2\n", nil,
			[]string{"pools[0].max: set twice (first at line 3) (line 4)"}},
		{"an unknown key does not stop validation", "schedules:\n  - name: s\n    kind: x\n    colour: red\n", nil,
			[]string{"schedules[0].colour: unknown key", `schedules[0]: schedule "s": `}},
		{"schedule fields", "schedules:\n  - name: s\n    every: 1m\n    kind: x\n    max_attempts: many\n    args: [1]\n    colour: red\n", nil,
			[]string{
				`schedules[0].max_attempts: expected an integer, got "many" (line 5)`,
				"schedules[0].args: expected a mapping, got a list (line 6)",
				"schedules[0].colour: unknown key; use one of name, cron, tz, every, at, catch_up, kind, args, queue, priority, max_attempts, timeout (line 7)",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(writeFile(t, tc.file), tc.env)
			wantProblems(t, err, tc.want...)
		})
	}
}

func TestLoadAnchorsAndMerges(t *testing.T) {
	t.Parallel()
	const file = `
pools:
  - &base
    name: a
    max: 2
    env: &env {MODE: x}
    policy: {max_wait: 5s}
  - <<: *base
    name: b
    env: *env
  - <<: [{max: 3, min: 1}, *base]
    name: c
`
	c, err := Load(writeFile(t, file), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		name     string
		min, max int
	}{{"a", 0, 2}, {"b", 0, 2}, {"c", 1, 3}} {
		p := c.Pools[i]
		if p.Name != want.name || p.Min != want.min || p.Max != want.max || p.Policy.MaxWait != 5*time.Second ||
			!reflect.DeepEqual(p.Queues, []string{want.name}) || p.Env["MODE"] != "x" {
			t.Errorf("pools[%d] = %+v, want name %s, min %d, max %d, max_wait 5s and env MODE=x", i, p, want.name, want.min, want.max)
		}
	}

	_, err = Load(writeFile(t, "pools:\n  - <<: [1]\n    name: a\n"), nil)
	wantProblems(t, err, `pools[0].<<: expected a mapping or a list of mappings to merge, got "1" (line 2)`)
	_, err = Load(writeFile(t, "pools:\n  - &p\n    name: a\n    <<: *p\n"), nil)
	wantProblems(t, err, "pools[0].<<: merges a mapping into itself (line 4)")
}

func TestSetByFlag(t *testing.T) {
	t.Parallel()
	// As `ebb up` does: defaults and variables, then its flags on top.
	c, err := Load("", []string{"EBB_POOL_DEFAULT_MAX=3", "EBB_POOL_DEFAULT_QUEUES=a,b"})
	if err != nil {
		t.Fatal(err)
	}
	c.Pools[0].Concurrency = 0
	c.SetByFlag("pools[0].concurrency", "--concurrency")
	c.Pools[0].Max = 0
	c.SetByFlag("pools[0].max", "--max")
	c.Pools[0].Queues = []string{"ok", "no/slash"}
	c.SetByFlag("pools[0].queues", "--queues")
	c.Broker = ""
	c.SetByFlag("broker", "--broker")
	c.Pools[0].Min = 1 // not by a flag: named by its path, as before
	wantProblems(t, c.Validate(),
		"--broker: required; use redis://host:port/db, rediss://…, postgres://host:5432/dbname or sqlite:path/to/file.db",
		`--queues: "no/slash": use 1–128 characters from [A-Za-z0-9_.-]`,
		"--max: 0 is less than min 1",
		"--concurrency: 0 must be at least 1",
	)
	for _, line := range problems(t, c.Validate()) {
		if strings.HasSuffix(line, ")") {
			t.Errorf("problem %q names an origin; a flag's problem is named by the flag alone", line)
		}
	}

	// A copy for display keeps the flags.
	if err := c.Redacted().Validate(); err == nil || !strings.Contains(err.Error(), "--concurrency: ") {
		t.Errorf("Redacted().Validate() = %v, want the flag named", err)
	}

	// A flag applied to every pool is one problem, not one per pool.
	d := Default()
	d.Pools = append(d.Pools, DefaultPool("other"))
	for i := range d.Pools {
		d.Pools[i].Concurrency = 0
		d.SetByFlag(fmt.Sprintf("pools[%d].concurrency", i), "--concurrency")
	}
	wantProblems(t, d.Validate(), "--concurrency: 0 must be at least 1")
}
