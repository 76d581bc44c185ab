package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/internal/ecsfake"
	"github.com/ebbq/ebb/internal/testredis"
)

// TestCeleryOnECS: a Celery pool whose workers are the tasks of an ECS
// service (the fake's scheduler runs each task's command, `ebb celery-exec`
// starting the unchanged Celery worker under its task id). From zero to
// three workers and back, then bursts that scale in again and again: every
// task SUCCESS exactly once, every stop ECS made a scale-in of an
// unprotected task whose worker ran and held nothing (ebb stopped it
// consuming, waited until it held nothing, released its protection and
// only then lowered the desired count), and every worker ended by Celery's
// warm shutdown on the platform's SIGTERM, exiting 0.
func TestCeleryOnECS(t *testing.T) {
	// Not parallel: its Celery prefork workers are the heaviest processes of
	// the package, and beside the kill and drain tests they would starve the
	// timing those tests check.
	needCelery(t)
	const service = "celery-reports"
	appDir, err := filepath.Abs("testdata/celery")
	if err != nil {
		t.Fatal(err)
	}
	rs := testredis.Start(t)
	cf := &celeryFleet{t: t, redis: rs, appDir: appDir, logDir: filepath.Join(t.TempDir(), "tasks"),
		broker: fmt.Sprintf("redis://127.0.0.1:%d/%d", rs.Port, celeryDB)}
	cf.rdb = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.Port), DB: celeryDB})
	t.Cleanup(func() { _ = cf.rdb.Close() })

	// The task definition: the Celery image's command behind
	// `ebb celery-exec`, which puts the task id into the nodename.
	command := []string{ebbBin, "celery-exec", "--", celeryPython, "-m", "celery", "-A", "fleet_tasks", "worker",
		"-Q", celeryQueue, "-c", "2", "--loglevel", "INFO", "--without-mingle", "--without-gossip", "-E",
		"--hostname", "{id}@%h"}
	log := &ecsLog{}
	f := startECSFake(t, ecsfake.ServiceConfig{
		Name: service, Command: command,
		Env: []string{"PYTHONPATH=" + appDir, "PYTHONDONTWRITEBYTECODE=1", "EBB_CELERY_BROKER=" + cf.broker,
			"EBB_CELERY_PREFIX=" + celeryPrefix, "EBB_CELERY_QUEUE=" + celeryQueue, "EBB_CELERY_VISIBILITY=3600"},
		LogDir: cf.logDir, StopTimeout: 40 * time.Second, TermLeaderOnly: true,
	}, 7, log, celeryBusyAtStop(cf.rdb, log))

	port := freePort(t)
	q := strconv.Quote
	yaml := fmt.Sprintf(`broker: %s
server:
  listen: %s
autoscaler:
  reconcile_interval: 1s
pools:
  - name: %s
    queues: [%s]
    min: 0
    max: 3
    concurrency: 2
    target: ecs
    ecs:
      cluster: %s
      service: %s
      region: %s
      endpoint: %s
    celery:
      broker: %s
      global_keyprefix: %s
    stop_grace: 40s
    policy:
      scale_down_delay: 1s
      idle_before_zero: 2s
`, q("sqlite:"+filepath.Join(t.TempDir(), "ebb.db")), q(fmt.Sprintf("127.0.0.1:%d", port)), celeryPool, celeryQueue,
		q(ecsTestCluster), q(service), q(ecsTestRegion), q(f.URL()), q(cf.broker), q(celeryPrefix))
	cfgPath := filepath.Join(t.TempDir(), "ebb.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cf.srv = startECSServer(t, "server", cfgPath, port)
	cf.srv.waitLeading(t, 20*time.Second)
	waitFor(t, 20*time.Second, "the Celery pool to watch its queue and read the service", func() (bool, string) {
		p := cf.srv.pool(t, celeryPool)
		return strings.HasPrefix(p.FleetStatus, "woken by keyspace notifications") && strings.Contains(p.TargetStatus, "desired 0"),
			p.FleetStatus + "; " + p.TargetStatus
	}, cf.srv.proc)

	// From zero to max and back.
	pushed := cf.firstPush(t)
	p := cf.produce(t, "30", "1")
	cf.waitDone(t, p.IDs, 3*time.Minute)
	var pushAt time.Time
	select {
	case pushAt = <-pushed:
	case <-time.After(5 * time.Second):
		t.Fatal("MONITOR saw no LPUSH onto the queue")
	}
	ds := cf.srv.decisions(t)
	if len(ds) == 0 || ds[0].Action != "up" || ds[0].From != 0 {
		t.Fatalf("the first decision is not a scale-up from zero: %+v", ds)
	}
	most := 0
	for _, d := range ds {
		most = max(most, d.To)
	}
	if most != 3 {
		t.Errorf("the pool peaked at %d workers, want max 3", most)
	}
	t.Logf("Celery on ECS decision latency: %s from the first .delay()'s LPUSH (MONITOR) to the scale-up decision (%s)",
		ds[0].At.Sub(pushAt).Round(time.Microsecond), ds[0].Reason)
	waitECSAtZero(t, f, service, 90*time.Second, cf.srv.proc)

	// Bursts: each wakes the pool from zero, and scales it in again.
	var all []string
	all = append(all, p.IDs...)
	for burst := range 3 {
		b := cf.produce(t, strconv.Itoa(1+burst), "2")
		cf.waitDone(t, b.IDs, 2*time.Minute)
		waitECSAtZero(t, f, service, 90*time.Second, cf.srv.proc)
		all = append(all, b.IDs...)
	}
	cf.checkResults(t, all)
	cf.checkExactlyOnce(t, all)

	events := f.Events()
	scaleIns := checkECSStops(t, events)
	started := len(f.Tasks(service))
	t.Logf("Celery on ECS: %d tasks SUCCESS once each; %d ECS tasks ran, %d scale-in stops, every one of an unprotected, drained task", len(all), started, scaleIns)
	if scaleIns < 4 {
		t.Errorf("%d scale-ins, want at least 4", scaleIns)
	}
	if scaleIns != len(events) || scaleIns != started {
		t.Errorf("%d scale-ins, %d stops, %d tasks: want every task stopped by a scale-in", scaleIns, len(events), started)
	}
	for _, e := range events {
		if e.ExitedAt.IsZero() {
			t.Errorf("task %s has not exited", e.TaskID)
		}
	}
	logs := readWorkerLogs(t, cf.logDir)
	if len(logs) != started {
		t.Errorf("%d task logs for %d tasks", len(logs), started)
	}
	for id, l := range logs {
		// Stopped consuming by ebb, then warm shutdown on SIGTERM (not a
		// remote shutdown: the platform stops it), and it handed back
		// nothing, since it held nothing.
		if !strings.Contains(l, "Canceling queue "+celeryQueue) || !strings.Contains(l, "Warm shutdown (MainProcess)") ||
			strings.Contains(l, "Got shutdown from remote") || strings.Contains(l, "Restoring") {
			t.Errorf("task %s's worker was not retired by cancel_consumer and SIGTERM's warm shutdown while holding nothing; its log:\n%s", id, tailString(l, 2000))
		}
		if !strings.Contains(l, id+"@") {
			t.Errorf("task %s's worker does not carry the task id in its nodename:\n%s", id, tailString(l, 1000))
		}
	}
	if n := f.Calls(ecsfake.OpUpdateTaskProtection); n == 0 {
		t.Errorf("the control plane never called UpdateTaskProtection")
	}
}

// celeryBusyAtStop is a BusyAtStop hook: a task is busy when its Celery
// worker (nodename <task id>@host) has started a task that has not
// finished, by the app's own records. A record that cannot be read counts
// as busy, which fails the test loudly rather than hiding a stop.
func celeryBusyAtStop(rdb *redis.Client, errs *ecsLog) func(string) bool {
	return func(taskID string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		runs, err := rdb.LRange(ctx, celeryPrefix+"e2e:runs", 0, -1).Result()
		if err != nil {
			errs.logf("BusyAtStop(%s): %v (counted busy)", taskID, err)
			return true
		}
		done, err := rdb.LRange(ctx, celeryPrefix+"e2e:done", 0, -1).Result()
		if err != nil {
			errs.logf("BusyAtStop(%s): %v (counted busy)", taskID, err)
			return true
		}
		finished := map[string]bool{}
		for _, id := range done {
			finished[id] = true
		}
		for _, r := range runs {
			if id, host, _ := strings.Cut(r, " "); strings.HasPrefix(host, taskID+"@") && !finished[id] {
				errs.logf("BusyAtStop(%s): it runs %s", taskID, id)
				return true
			}
		}
		return false
	}
}
