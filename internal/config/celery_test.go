package config

import (
	"os"
	"strings"
	"testing"
)

func TestCeleryPool(t *testing.T) {
	t.Parallel()
	const good = `
pools:
  - name: celery-reports
    queues: [reports]
    max: 3
    celery:
      broker: redis://127.0.0.1:6379/3
      global_keyprefix: "app:"
    command: [celery, -A, proj, worker, --hostname, "{id}@%h"]
`
	c, err := Load(writeFile(t, good), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Pools[0]
	if p.Celery == nil || p.Celery.Broker != "redis://127.0.0.1:6379/3" || p.Celery.GlobalKeyPrefix != "app:" || !p.Celery.EnableEvents {
		t.Errorf("celery = %+v, want the broker, the prefix and enable_events on by default", p.Celery)
	}
	if c.Pools[0].Target != TargetLocal {
		t.Errorf("target = %q", p.Target)
	}
	pw := strings.Replace(good, "redis://127.0.0.1", "redis://:hunter2@127.0.0.1", 1)
	if c, err := Load(writeFile(t, pw), nil); err != nil || strings.Contains(c.String(), "hunter2") || c.Pools[0].Celery.Broker != "redis://:hunter2@127.0.0.1:6379/3" {
		t.Errorf("the Celery broker's password is shown, or lost: %v\n%s", err, c)
	}
	for _, tc := range []struct {
		name, file string
		probs      []string
	}{
		{"no broker", strings.Replace(good, "      broker: redis://127.0.0.1:6379/3\n", "", 1),
			[]string{"pools[0].celery.broker: required for a Celery pool"}},
		{"not redis", strings.Replace(good, "redis://127.0.0.1:6379/3", "amqp://127.0.0.1:5672//", 1),
			[]string{"pools[0].celery.broker: want the app's Redis broker_url"}},
		{"no id in the command", strings.Replace(good, `"{id}@%h"`, `"w@%h"`, 1),
			[]string{"pools[0].command: put --hostname {id}@%h in a Celery pool's command"}},
		{"no command", strings.Replace(good, "    command: [celery, -A, proj, worker, --hostname, \"{id}@%h\"]\n", "", 1),
			[]string{"pools[0].command: required for a Celery pool"}},
		{"weights", strings.Replace(good, "queues: [reports]", "queues: [\"reports:2\"]", 1),
			[]string{"pools[0].queues: \"reports:2\": a Celery pool's queues take no weights"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(writeFile(t, tc.file), nil)
			wantProblems(t, err, tc.probs...)
		})
	}
}

// TestExampleCeleryPool loads the example file's commented Celery pool
// with its comment marks taken off, so that the example stays valid.
func TestExampleCeleryPool(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../ebb.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pool []string
	in := false
	for line := range strings.Lines(string(data)) {
		switch {
		case strings.HasPrefix(line, "  # - name: celery-"):
			in = true
		case in && !strings.HasPrefix(line, "  #"):
			in = false
		}
		if in {
			pool = append(pool, "  "+strings.TrimPrefix(line, "  # "))
		}
	}
	if len(pool) < 5 {
		t.Fatal("no commented Celery pool (a line starting \"  # - name: celery-\") in the example")
	}
	c, err := Load(writeFile(t, "pools:\n"+strings.Join(pool, "")), nil)
	if err != nil {
		t.Fatalf("the example's Celery pool does not load: %v\n%s", err, strings.Join(pool, ""))
	}
	if p := c.Pools[0]; p.Celery == nil || p.Celery.Broker == "" || len(p.Command) == 0 {
		t.Errorf("example Celery pool = %+v", p)
	}
}

// TestCeleryPoolOnPlatforms: a Celery pool runs on ecs and kubernetes too,
// where the task definition or the pod template runs the worker, so the
// pool names no command (and one that does is told why not).
func TestCeleryPoolOnPlatforms(t *testing.T) {
	t.Parallel()
	const base = `
pools:
  - name: celery-reports
    queues: [reports]
    max: 3
    celery:
      broker: redis://127.0.0.1:6379/3
`
	for _, tc := range []struct {
		name, extra string
		target      string
		probs       []string
	}{
		{"ecs", "    target: ecs\n    ecs:\n      cluster: c\n      service: s\n      region: eu-west-1\n", TargetECS, nil},
		{"kubernetes", "    target: kubernetes\n    kubernetes:\n      deployment: celery-reports\n", TargetKubernetes, nil},
		{"ecs with a command", "    target: ecs\n    ecs:\n      cluster: c\n      service: s\n      region: eu-west-1\n    command: [celery, worker, --hostname, \"{id}@%h\"]\n",
			TargetECS, []string{"pools[0].command: ECS runs the task definition's command"}},
		{"local without a command", "", TargetLocal, []string{"pools[0].command: required for a Celery pool on the local target"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(writeFile(t, base+tc.extra), nil)
			if tc.probs != nil {
				wantProblems(t, err, tc.probs...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p := c.Pools[0]; p.Target != tc.target || p.Celery == nil {
				t.Errorf("pool = %+v, want a Celery pool on %s", p, tc.target)
			}
		})
	}
}
