package ecsfake_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/ebbq/ebb/internal/ecsfake"
)

// TestTasksSeeMetadataAndAgent scales a service up through UpdateService and
// checks what each task's process sees: its environment, and the metadata
// and agent endpoints it names.
//
// Not parallel: it sets an AWS_* variable to check that tasks do not
// inherit it.
func TestTasksSeeMetadataAndAgent(t *testing.T) {
	t.Setenv("AWS_PROFILE", "must-not-reach-tasks")
	sc := serviceConfig(t, "ebb", "workers", "serve")
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{sc}})
	c := newClient(f)
	if _, err := c.UpdateService(t.Context(), &ecs.UpdateServiceInput{Cluster: aws.String("ebb"),
		Service: aws.String("workers"), DesiredCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	tasks := runningReady(t, f, sc, 2)
	clusterARN := f.ClusterARN("ebb")

	for _, task := range tasks {
		if task.PID <= 0 {
			t.Fatalf("task %s has pid %d", task.ID, task.PID)
		}
		log := taskLog(t, sc, task.ID)
		for _, line := range []string{
			"env ECS_CONTAINER_METADATA_URI_V4=" + f.URL() + "/v4/" + task.ID + "\n",
			"env ECS_AGENT_URI=" + f.URL() + "/api/" + task.ID + "\n",
			"env AWS_EXECUTION_ENV=AWS_ECS_FARGATE\n",
			"env ECSFAKE_EXTRA=extra-workers\n",
		} {
			if !strings.Contains(log, line) {
				t.Errorf("task %s: no %q in its output:\n%s", task.ID, line, log)
			}
		}
		if strings.Contains(log, "AWS_PROFILE") {
			t.Errorf("task %s inherited AWS_PROFILE:\n%s", task.ID, log)
		}

		status, md := httpJSON(t, http.MethodGet, f.URL()+"/v4/"+task.ID+"/task", "")
		if status != http.StatusOK || md["Cluster"] != clusterARN || md["TaskARN"] != task.ARN ||
			md["Family"] != "workers" || md["Revision"] != "1" || md["ServiceName"] != "workers" ||
			md["DesiredStatus"] != "RUNNING" || md["KnownStatus"] != "RUNNING" || md["LaunchType"] != "FARGATE" {
			t.Fatalf("task metadata: %d %v", status, md)
		}
		if ctrs, _ := md["Containers"].([]any); len(ctrs) != 1 || field(t, ctrs[0], "Name") != "workers" {
			t.Fatalf("task metadata containers: %v", md["Containers"])
		}
		status, ctr := httpJSON(t, http.MethodGet, f.URL()+"/v4/"+task.ID, "")
		if status != http.StatusOK || ctr["Name"] != "workers" || ctr["KnownStatus"] != "RUNNING" ||
			field(t, ctr, "Labels", "com.amazonaws.ecs.task-arn") != task.ARN ||
			field(t, ctr, "Labels", "com.amazonaws.ecs.cluster") != clusterARN ||
			!strings.HasPrefix(ctr["DockerId"].(string), task.ID+"-") {
			t.Fatalf("container metadata: %d %v", status, ctr)
		}
	}

	// The agent's protection endpoint, as a worker calls it.
	task := tasks[0]
	agent := f.URL() + "/api/" + task.ID + "/task-protection/v1/state"
	before := time.Now()
	status, resp := httpJSON(t, http.MethodPut, agent, `{"ProtectionEnabled":true,"ExpiresInMinutes":10}`)
	if status != http.StatusOK || field(t, resp, "protection", "ProtectionEnabled") != true ||
		field(t, resp, "protection", "TaskArn") != task.ARN {
		t.Fatalf("agent PUT: %d %v", status, resp)
	}
	exp, err := time.Parse(time.RFC3339, field(t, resp, "protection", "ExpirationDate").(string))
	if err != nil {
		t.Fatal(err)
	}
	near(t, "agent ExpirationDate", &exp, before.Add(10*time.Minute), 5*time.Second)
	if got, _ := f.Task(task.ID); !got.Protected || !got.ProtectionExpiresAt.Equal(exp) {
		t.Fatalf("fake's view after the agent PUT: %+v", got)
	}
	gp, err := c.GetTaskProtection(t.Context(), &ecs.GetTaskProtectionInput{Cluster: aws.String("ebb"), Tasks: []string{task.ID}})
	if err != nil || !gp.ProtectedTasks[0].ProtectionEnabled || !gp.ProtectedTasks[0].ExpirationDate.Equal(exp) {
		t.Fatalf("GetTaskProtection after the agent PUT: %+v, %v", gp, err)
	}
	status, resp = httpJSON(t, http.MethodGet, agent, "")
	if status != http.StatusOK || field(t, resp, "protection", "ProtectionEnabled") != true ||
		field(t, resp, "protection", "ExpirationDate") == nil {
		t.Fatalf("agent GET: %d %v", status, resp)
	}
	status, resp = httpJSON(t, http.MethodPut, agent, `{"ProtectionEnabled":false}`)
	if status != http.StatusOK || field(t, resp, "protection", "ProtectionEnabled") != false ||
		field(t, resp, "protection", "ExpirationDate") != nil {
		t.Fatalf("agent PUT disabling: %d %v", status, resp)
	}
	if got, _ := f.Task(task.ID); got.Protected {
		t.Fatal("still protected after the agent disabled it")
	}

	// The agent's refusals.
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"ProtectionEnabled":true,"Bogus":1}`, http.StatusBadRequest, "InvalidParameterException"},
		{`{}`, http.StatusBadRequest, "InvalidParameterException"},
		{`{"ProtectionEnabled":true,"ExpiresInMinutes":0}`, http.StatusBadRequest, "InvalidParameterException"},
	} {
		status, resp := httpJSON(t, http.MethodPut, agent, tc.body)
		if status != tc.status || field(t, resp, "error", "Code") != tc.code {
			t.Errorf("agent PUT %s: %d %v, want %d %s", tc.body, status, resp, tc.status, tc.code)
		}
	}
	status, resp = httpJSON(t, http.MethodPut, f.URL()+"/api/nope/task-protection/v1/state", `{"ProtectionEnabled":true}`)
	if status != http.StatusNotFound || field(t, resp, "error", "Code") != "ResourceNotFoundException" {
		t.Fatalf("agent PUT for an unknown task: %d %v", status, resp)
	}
	for op, want := range map[string]int{ecsfake.OpAgentPutProtection: 6, ecsfake.OpAgentGetProtection: 1,
		ecsfake.OpMetadataTask: 2, ecsfake.OpMetadataContainer: 2} {
		if got := f.Calls(op); got != want {
			t.Errorf("Calls(%s) = %d, want %d", op, got, want)
		}
	}
}

// TestExitedTaskIsReplaced: a task whose process exits by itself is
// STOPPED, recorded with its exit code and the hook's word on whether it was
// busy, and replaced.
func TestExitedTaskIsReplaced(t *testing.T) {
	t.Parallel()
	sc := serviceConfig(t, "ebb", "workers", "serve")
	sc.DesiredCount = 1
	var mu sync.Mutex
	var asked []string
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{sc}, BusyAtStop: func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, id)
		return true
	}})
	old := runningReady(t, f, sc, 1)[0]
	if err := syscall.Kill(old.PID, syscall.SIGUSR1); err != nil { // it exits 3
		t.Fatal(err)
	}
	// Wait through the fake's own condition.
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	var replacement ecsfake.Task
	err := f.Wait(ctx, func() bool {
		got, _ := f.Task(old.ID)
		active := f.ActiveTasks("workers")
		if got.LastStatus != ecsfake.StatusStopped || len(active) != 1 || active[0].LastStatus != ecsfake.StatusRunning {
			return false
		}
		replacement = active[0]
		return true
	})
	if err != nil {
		t.Fatalf("waiting for the replacement: %v", err)
	}
	if replacement.ID == old.ID || f.DesiredCount("workers") != 1 {
		t.Fatalf("replacement %+v, desired %d", replacement, f.DesiredCount("workers"))
	}
	evs := f.Events()
	if len(evs) != 1 {
		t.Fatalf("events %+v, want one", evs)
	}
	ev := evs[0]
	if ev.TaskID != old.ID || ev.Reason != ecsfake.StopExited || ev.ExitCode != 3 || ev.Protected ||
		!ev.Busy || !ev.BusyKnown || ev.Killed || ev.ExitedAt.IsZero() || ev.Service != "workers" || ev.TaskARN != old.ARN {
		t.Fatalf("event %+v", ev)
	}
	mu.Lock()
	if len(asked) != 1 || asked[0] != old.ID {
		t.Errorf("BusyAtStop asked about %v, want [%s]", asked, old.ID)
	}
	mu.Unlock()
	dt, err := newClient(f).DescribeTasks(t.Context(), &ecs.DescribeTasksInput{Cluster: aws.String("ebb"), Tasks: []string{old.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if st := dt.Tasks[0]; st.StopCode != types.TaskStopCodeEssentialContainerExited ||
		aws.ToString(st.StoppedReason) != "Essential container in task exited" || aws.ToInt32(st.Containers[0].ExitCode) != 3 {
		t.Fatalf("exited task described as %+v", st)
	}
}

// TestScaleInSparesProtected: of three tasks two are protected; lowering
// the desired count by one stops exactly the third, with SIGTERM.
func TestScaleInSparesProtected(t *testing.T) {
	t.Parallel()
	sc := serviceConfig(t, "ebb", "workers", "serve")
	sc.DesiredCount = 3
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{sc},
		BusyAtStop: func(string) bool { return false }})
	tasks := runningReady(t, f, sc, 3)
	c := newClient(f)
	if _, err := c.UpdateTaskProtection(t.Context(), &ecs.UpdateTaskProtectionInput{Cluster: aws.String("ebb"),
		Tasks: []string{tasks[0].ARN, tasks[2].ID}, ProtectionEnabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateService(t.Context(), &ecs.UpdateServiceInput{Cluster: aws.String("ebb"),
		Service: aws.String("workers"), DesiredCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	victim := tasks[1]
	eventually(t, "the unprotected task stopped", func() bool {
		got, _ := f.Task(victim.ID)
		return got.LastStatus == ecsfake.StatusStopped
	})
	waitPasses(t, f, 3)
	active := f.ActiveTasks("workers")
	if len(active) != 2 || active[0].ID != tasks[0].ID || active[1].ID != tasks[2].ID {
		t.Fatalf("active after scale-in: %+v", active)
	}
	evs := f.Events()
	if len(evs) != 1 {
		t.Fatalf("events %+v, want one", evs)
	}
	if ev := evs[0]; ev.TaskID != victim.ID || ev.Reason != ecsfake.StopScaleIn || ev.Protected || ev.Busy ||
		!ev.BusyKnown || ev.Killed || ev.ExitCode != 0 || ev.ExitedAt.Before(ev.Time) {
		t.Fatalf("event %+v", ev)
	}
	if log := taskLog(t, sc, victim.ID); !strings.Contains(log, "SIGTERM\n") {
		t.Fatalf("victim's output has no SIGTERM:\n%s", log)
	}
	got, _ := f.Task(victim.ID)
	if got.DesiredStatus != ecsfake.StatusStopped || got.StopCode != "ServiceSchedulerInitiated" || got.StoppingAt.IsZero() {
		t.Fatalf("victim %+v", got)
	}
}

// TestScaleInWaitsWhileAllProtected: with every task protected (through the
// agent, as workers do it), scale-in stops nothing until a protection is
// released, and then stops that task.
func TestScaleInWaitsWhileAllProtected(t *testing.T) {
	t.Parallel()
	sc := serviceConfig(t, "ebb", "workers", "serve")
	sc.DesiredCount = 2
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{sc}})
	tasks := runningReady(t, f, sc, 2)
	agent := func(task ecsfake.Task, body string) {
		t.Helper()
		if status, resp := httpJSON(t, http.MethodPut, f.URL()+"/api/"+task.ID+"/task-protection/v1/state", body); status != http.StatusOK {
			t.Fatalf("agent PUT %s: %d %v", body, status, resp)
		}
	}
	for _, task := range tasks {
		agent(task, `{"ProtectionEnabled":true}`)
	}
	if err := f.SetDesiredCount("workers", 1); err != nil {
		t.Fatal(err)
	}
	waitPasses(t, f, 5)
	if active := f.ActiveTasks("workers"); len(active) != 2 || len(f.Events()) != 0 {
		t.Fatalf("scale-in went ahead with every task protected: active %+v, events %+v", active, f.Events())
	}
	ds, err := newClient(f).DescribeServices(t.Context(), &ecs.DescribeServicesInput{Cluster: aws.String("ebb"), Services: []string{"workers"}})
	if err != nil {
		t.Fatal(err)
	}
	if s := ds.Services[0]; s.DesiredCount != 1 || s.RunningCount != 2 {
		t.Fatalf("service desired %d running %d, want 1 and 2", s.DesiredCount, s.RunningCount)
	}

	agent(tasks[1], `{"ProtectionEnabled":false}`)
	eventually(t, "the released task stopped", func() bool {
		got, _ := f.Task(tasks[1].ID)
		return got.LastStatus == ecsfake.StatusStopped
	})
	if active := f.ActiveTasks("workers"); len(active) != 1 || active[0].ID != tasks[0].ID {
		t.Fatalf("active %+v, want only %s", active, tasks[0].ID)
	}
}

// TestExpiredProtectionCountsAsUnprotected: a protection that expired does
// not spare its task, and reads back as disabled.
func TestExpiredProtectionCountsAsUnprotected(t *testing.T) {
	t.Parallel()
	sc := serviceConfig(t, "ebb", "workers", "serve")
	sc.DesiredCount = 2
	const minute = 50 * time.Millisecond
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{sc}, ProtectionMinute: minute})
	tasks := runningReady(t, f, sc, 2)
	c := newClient(f)
	for i, minutes := range []int32{4, 40} { // 200 ms and 2 s
		if _, err := c.UpdateTaskProtection(t.Context(), &ecs.UpdateTaskProtectionInput{Cluster: aws.String("ebb"),
			Tasks: []string{tasks[i].ID}, ProtectionEnabled: true, ExpiresInMinutes: aws.Int32(minutes)}); err != nil {
			t.Fatal(err)
		}
	}
	short, _ := f.Task(tasks[0].ID)
	if err := f.SetDesiredCount("workers", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the task whose protection expired stopped", func() bool {
		got, _ := f.Task(tasks[0].ID)
		return got.LastStatus == ecsfake.StatusStopped
	})
	ev := f.Events()[0]
	if ev.TaskID != tasks[0].ID || ev.Protected || ev.Time.Before(short.ProtectionExpiresAt) {
		t.Fatalf("event %+v, protection expired at %s", ev, short.ProtectionExpiresAt)
	}
	gp, err := c.GetTaskProtection(t.Context(), &ecs.GetTaskProtectionInput{Cluster: aws.String("ebb"), Tasks: []string{tasks[1].ID}})
	if err != nil || !gp.ProtectedTasks[0].ProtectionEnabled {
		t.Fatalf("the long protection: %+v, %v", gp, err)
	}
	if active := f.ActiveTasks("workers"); len(active) != 1 || active[0].ID != tasks[1].ID {
		t.Fatalf("active %+v", active)
	}
	// The long one expires too, and reads back as disabled.
	eventually(t, "the long protection expired", func() bool {
		gp, err := c.GetTaskProtection(t.Context(), &ecs.GetTaskProtectionInput{Cluster: aws.String("ebb"), Tasks: []string{tasks[1].ID}})
		return err == nil && !gp.ProtectedTasks[0].ProtectionEnabled && gp.ProtectedTasks[0].ExpirationDate == nil
	})
}

// TestIgnoredProtectionLetsBusyTasksBeStopped: with protection accepted and
// ignored, scale-in stops a busy task, and the event says so.
func TestIgnoredProtectionLetsBusyTasksBeStopped(t *testing.T) {
	t.Parallel()
	sc := serviceConfig(t, "ebb", "workers", "serve")
	sc.DesiredCount = 1
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{sc}, BusyAtStop: func(string) bool { return true }})
	task := runningReady(t, f, sc, 1)[0]
	f.SetIgnoreProtection(true)
	status, resp := httpJSON(t, http.MethodPut, f.URL()+"/api/"+task.ID+"/task-protection/v1/state", `{"ProtectionEnabled":true}`)
	if status != http.StatusOK || field(t, resp, "protection", "ProtectionEnabled") != true {
		t.Fatalf("agent PUT: %d %v", status, resp)
	}
	if got, _ := f.Task(task.ID); got.Protected {
		t.Fatal("protection applied although ignored")
	}
	if err := f.SetDesiredCount("workers", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the busy task stopped", func() bool {
		got, _ := f.Task(task.ID)
		return got.LastStatus == ecsfake.StatusStopped
	})
	if ev := f.Events()[0]; ev.Reason != ecsfake.StopScaleIn || ev.Protected || !ev.ProtectionIgnored || !ev.Busy || !ev.BusyKnown {
		t.Fatalf("event %+v", ev)
	}
}

// TestStopTimeoutEndsInSIGKILL: a task that ignores SIGTERM is killed
// after its StopTimeout.
func TestStopTimeoutEndsInSIGKILL(t *testing.T) {
	t.Parallel()
	sc := serviceConfig(t, "ebb", "stubborn", "stubborn")
	sc.DesiredCount = 1
	sc.StopTimeout = 300 * time.Millisecond
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{sc}})
	task := runningReady(t, f, sc, 1)[0]
	if err := f.SetDesiredCount("stubborn", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stubborn task stopped", func() bool {
		got, _ := f.Task(task.ID)
		return got.LastStatus == ecsfake.StatusStopped
	})
	ev := f.Events()[0]
	if !ev.Killed || ev.ExitCode != -1 || ev.ExitStatus != "signal: killed" || ev.ExitedAt.Sub(ev.Time) < sc.StopTimeout {
		t.Fatalf("event %+v", ev)
	}
	if log := taskLog(t, sc, task.ID); !strings.Contains(log, "SIGTERM\n") {
		t.Fatalf("no SIGTERM before the SIGKILL:\n%s", log)
	}
}

// TestStartDelayAndFailedStart: a task stays PROVISIONING for StartDelay;
// a Command that cannot start gives STOPPED tasks with TaskFailedToStart.
func TestStartDelayAndFailedStart(t *testing.T) {
	t.Parallel()
	slow := serviceConfig(t, "ebb", "slow", "serve")
	slow.StartDelay = time.Second
	broken := serviceConfig(t, "ebb", "broken", "serve")
	broken.Command = []string{"/nonexistent/ecsfake-task"}
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{slow, broken}})
	if err := f.SetDesiredCount("slow", 1); err != nil {
		t.Fatal(err)
	}
	var tasks []ecsfake.Task
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := f.Wait(ctx, func() bool { tasks = f.ActiveTasks("slow"); return len(tasks) > 0 }); err != nil {
		t.Fatal(err)
	}
	if tasks[0].LastStatus != ecsfake.StatusProvisioning || tasks[0].PID != 0 {
		t.Fatalf("new task %+v, want PROVISIONING without a process", tasks[0])
	}
	ds, err := newClient(f).DescribeServices(t.Context(), &ecs.DescribeServicesInput{Cluster: aws.String("ebb"), Services: []string{"slow"}})
	if err != nil || ds.Services[0].PendingCount != 1 || ds.Services[0].RunningCount != 0 {
		t.Fatalf("service while provisioning: %+v, %v", ds, err)
	}
	started := runningReady(t, f, slow, 1)[0]
	if started.ID != tasks[0].ID || started.StartedAt.Sub(started.CreatedAt) < slow.StartDelay {
		t.Fatalf("started %+v", started)
	}

	if err := f.SetDesiredCount("broken", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a failed start", func() bool {
		for _, ev := range f.Events() {
			if ev.Service == "broken" && ev.Reason == ecsfake.StopFailedToStart {
				return true
			}
		}
		return false
	})
	if err := f.SetDesiredCount("broken", 0); err != nil {
		t.Fatal(err)
	}
	got := f.Tasks("broken")[0]
	if got.LastStatus != ecsfake.StatusStopped || got.StopCode != "TaskFailedToStart" || !strings.Contains(got.StoppedReason, "ecsfake-task") {
		t.Fatalf("failed task %+v", got)
	}
}

// TestCloseStopsEveryTask: Close ends every process (SIGKILL for those that
// ignore SIGTERM), records the stops, and can be called again.
func TestCloseStopsEveryTask(t *testing.T) {
	t.Parallel()
	serve := serviceConfig(t, "a", "serve", "serve")
	serve.DesiredCount = 2
	stubborn := serviceConfig(t, "b", "stubborn", "stubborn")
	stubborn.DesiredCount = 1
	stubborn.StopTimeout = 300 * time.Millisecond
	pending := serviceConfig(t, "b", "pending", "serve")
	pending.DesiredCount = 1
	pending.StartDelay = time.Hour
	f, err := ecsfake.New(ecsfake.Config{Services: []ecsfake.ServiceConfig{serve, stubborn, pending}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	tasks := append(runningReady(t, f, serve, 2), runningReady(t, f, stubborn, 1)...)
	began := time.Now()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > stubborn.StopTimeout+5*time.Second {
		t.Errorf("Close took %s", took)
	}
	for _, task := range tasks {
		if err := syscall.Kill(task.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("task %s's process %d after Close: %v", task.ID, task.PID, err)
		}
		if got, _ := f.Task(task.ID); got.LastStatus != ecsfake.StatusStopped {
			t.Errorf("task %s after Close: %+v", task.ID, got)
		}
	}
	if got := f.Tasks("pending"); len(got) != 1 || got[0].LastStatus != ecsfake.StatusStopped {
		t.Errorf("provisioning task after Close: %+v", got)
	}
	evs := f.Events()
	if len(evs) != 4 {
		t.Fatalf("events %+v, want 4", evs)
	}
	killed := 0
	for _, ev := range evs {
		if ev.Reason != ecsfake.StopShutdown {
			t.Errorf("event %+v, want a shutdown", ev)
		}
		if ev.Killed {
			killed++
		}
	}
	if killed != 1 {
		t.Errorf("%d tasks killed, want the stubborn one", killed)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(serve.LogDir); err != nil {
		t.Fatal(err)
	}
}
