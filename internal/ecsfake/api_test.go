package ecsfake_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/ebbq/ebb/internal/ecsfake"
)

// near fails unless got is within slack of want: timestamps that came back
// through the SDK, which reads epoch seconds (milliseconds or nanoseconds
// would land centuries away).
func near(t *testing.T, what string, got *time.Time, want time.Time, slack time.Duration) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: missing, want about %s", what, want)
	}
	if d := got.Sub(want); d < -slack || d > slack {
		t.Fatalf("%s = %s, want within %s of %s", what, got, slack, want)
	}
}

func wantAPIError[E error](t *testing.T, what string, err error) E {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("%s: error %v (%T), want %T", what, err, err, e)
	}
	return e
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	ae := wantAPIError[smithy.APIError](t, what, err)
	if ae.ErrorCode() != code {
		t.Fatalf("%s: error code %q (%v), want %q", what, ae.ErrorCode(), err, code)
	}
}

// TestAPIRoundTrip drives every control-plane operation through the real
// SDK client, configured the way a target would be (config.LoadDefaultConfig
// with the fake as base endpoint), so that a wrong member name, type or
// timestamp format shows as a missing or wrong value.
func TestAPIRoundTrip(t *testing.T) {
	t.Parallel()
	workers := serviceConfig(t, "ebb", "workers", "serve")
	other := serviceConfig(t, "ebb", "other", "serve")
	other.DesiredCount = 1
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{workers, other}})
	ctx := t.Context()
	begin := time.Now()

	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")),
		config.WithBaseEndpoint(f.URL()),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}))
	if err != nil {
		t.Fatal(err)
	}
	c := ecs.NewFromConfig(cfg, fastRetries(3))
	cluster := aws.String("ebb")
	const arnPrefix = "arn:aws:ecs:us-east-1:123456789012:"

	// DescribeServices: by name and by ARN; unknown names are failures.
	ds, err := c.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: cluster,
		Services: []string{"workers", "nope", arnPrefix + "service/ebb/other"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Services) != 2 || len(ds.Failures) != 1 {
		t.Fatalf("DescribeServices: %d services, %d failures, want 2 and 1", len(ds.Services), len(ds.Failures))
	}
	if fl := ds.Failures[0]; aws.ToString(fl.Reason) != "MISSING" || aws.ToString(fl.Arn) != arnPrefix+"service/ebb/nope" {
		t.Fatalf("failure %+v", fl)
	}
	svc := ds.Services[0]
	if aws.ToString(svc.ServiceName) != "workers" || aws.ToString(svc.ServiceArn) != arnPrefix+"service/ebb/workers" ||
		aws.ToString(svc.ClusterArn) != arnPrefix+"cluster/ebb" || aws.ToString(svc.Status) != "ACTIVE" ||
		svc.DesiredCount != 0 || svc.LaunchType != types.LaunchTypeFargate ||
		svc.SchedulingStrategy != types.SchedulingStrategyReplica ||
		aws.ToString(svc.TaskDefinition) != arnPrefix+"task-definition/workers:1" {
		t.Fatalf("service %+v", svc)
	}
	if len(svc.Deployments) != 1 || aws.ToString(svc.Deployments[0].Status) != "PRIMARY" ||
		svc.Deployments[0].RolloutState != types.DeploymentRolloutStateCompleted {
		t.Fatalf("deployments %+v", svc.Deployments)
	}
	near(t, "service createdAt", svc.CreatedAt, begin, 5*time.Second)
	if aws.ToString(ds.Services[1].ServiceName) != "other" || ds.Services[1].DesiredCount != 1 {
		t.Fatalf("second service %+v", ds.Services[1])
	}
	_, err = c.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("nope"), Services: []string{"workers"}})
	wantAPIError[*types.ClusterNotFoundException](t, "DescribeServices in an unknown cluster", err)
	_, err = c.DescribeServices(ctx, &ecs.DescribeServicesInput{Services: []string{"workers"}})
	wantAPIError[*types.ClusterNotFoundException](t, "DescribeServices in the default cluster", err)
	_, err = c.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: cluster, Services: slices.Repeat([]string{"workers"}, 11)})
	wantAPIError[*types.InvalidParameterException](t, "DescribeServices of 11", err)

	// UpdateService.
	us, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: cluster, Service: aws.String("workers"), DesiredCount: aws.Int32(3)})
	if err != nil {
		t.Fatal(err)
	}
	if us.Service == nil || us.Service.DesiredCount != 3 || aws.ToString(us.Service.ServiceName) != "workers" {
		t.Fatalf("UpdateService answered %+v", us.Service)
	}
	if got := f.DesiredCount("workers"); got != 3 {
		t.Fatalf("DesiredCount = %d after UpdateService, want 3", got)
	}
	_, err = c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: cluster, Service: aws.String("nope"), DesiredCount: aws.Int32(1)})
	wantAPIError[*types.ServiceNotFoundException](t, "UpdateService of an unknown service", err)
	_, err = c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: cluster, Service: aws.String("workers"), DesiredCount: aws.Int32(-1)})
	wantAPIError[*types.InvalidParameterException](t, "UpdateService to -1", err)
	_, err = c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: cluster, Service: aws.String("workers"), TaskDefinition: aws.String("x:2")})
	if e := wantAPIError[*types.InvalidParameterException](t, "UpdateService of the task definition", err); !strings.Contains(e.ErrorMessage(), "taskDefinition") {
		t.Fatalf("unmodelled member refused with %q, want it named", e.ErrorMessage())
	}

	running := runningReady(t, f, workers, 3)
	ds, err = c.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: cluster, Services: []string{"workers"}})
	if err != nil {
		t.Fatal(err)
	}
	if s := ds.Services[0]; s.DesiredCount != 3 || s.RunningCount != 3 || s.PendingCount != 0 {
		t.Fatalf("service counts desired %d running %d pending %d, want 3 3 0", s.DesiredCount, s.RunningCount, s.PendingCount)
	}

	// ListTasks, paginated, then cluster-wide.
	var arns []string
	pages := 0
	p := ecs.NewListTasksPaginator(c, &ecs.ListTasksInput{Cluster: cluster, ServiceName: aws.String("workers"), MaxResults: aws.Int32(2)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.TaskArns) > 2 {
			t.Fatalf("page of %d with maxResults 2", len(page.TaskArns))
		}
		pages++
		arns = append(arns, page.TaskArns...)
	}
	var want []string
	for _, task := range running {
		want = append(want, task.ARN)
		if task.ARN != arnPrefix+"task/ebb/"+task.ID || len(task.ID) != 32 || strings.Trim(task.ID, "0123456789abcdef") != "" {
			t.Fatalf("task id %q, ARN %q", task.ID, task.ARN)
		}
	}
	slices.Sort(arns)
	slices.Sort(want)
	if !slices.Equal(arns, want) || pages != 2 {
		t.Fatalf("ListTasks gave %v in %d pages, want %v in 2", arns, pages, want)
	}
	all, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: cluster})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.TaskArns) != 4 || all.NextToken != nil {
		t.Fatalf("ListTasks of the cluster: %v (next %v), want 4 tasks", all.TaskArns, all.NextToken)
	}
	_, err = c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: cluster, MaxResults: aws.Int32(101)})
	wantAPIError[*types.InvalidParameterException](t, "ListTasks of 101", err)
	_, err = c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: cluster, NextToken: aws.String("bogus")})
	wantAPIError[*types.InvalidParameterException](t, "ListTasks with a bad token", err)
	_, err = c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: cluster, ServiceName: aws.String("nope")})
	wantAPIError[*types.ServiceNotFoundException](t, "ListTasks of an unknown service", err)

	// DescribeTasks by ARN and by id; unknown ones are failures.
	dt, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: cluster,
		Tasks: []string{running[0].ARN, running[1].ID, "0123456789abcdef0123456789abcdef"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(dt.Tasks) != 2 || len(dt.Failures) != 1 || aws.ToString(dt.Failures[0].Reason) != "MISSING" ||
		aws.ToString(dt.Failures[0].Arn) != arnPrefix+"task/ebb/0123456789abcdef0123456789abcdef" {
		t.Fatalf("DescribeTasks: %d tasks, failures %+v", len(dt.Tasks), dt.Failures)
	}
	for i, task := range dt.Tasks {
		if aws.ToString(task.TaskArn) != running[i].ARN || aws.ToString(task.LastStatus) != "RUNNING" ||
			aws.ToString(task.DesiredStatus) != "RUNNING" || aws.ToString(task.ClusterArn) != arnPrefix+"cluster/ebb" ||
			aws.ToString(task.TaskDefinitionArn) != arnPrefix+"task-definition/workers:1" ||
			aws.ToString(task.Group) != "service:workers" || task.LaunchType != types.LaunchTypeFargate ||
			task.Version < 1 || len(task.Containers) != 1 ||
			aws.ToString(task.Containers[0].Name) != "workers" || aws.ToString(task.Containers[0].LastStatus) != "RUNNING" {
			t.Fatalf("task %d: %+v", i, task)
		}
		near(t, "task createdAt", task.CreatedAt, running[i].CreatedAt, time.Second)
		near(t, "task startedAt", task.StartedAt, running[i].StartedAt, time.Second)
	}
	_, err = c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: cluster, Tasks: slices.Repeat([]string{running[0].ID}, 101)})
	wantAPIError[*types.InvalidParameterException](t, "DescribeTasks of 101", err)

	// UpdateTaskProtection and GetTaskProtection.
	before := time.Now()
	up, err := c.UpdateTaskProtection(ctx, &ecs.UpdateTaskProtectionInput{Cluster: cluster,
		Tasks: []string{running[0].ARN}, ProtectionEnabled: true, ExpiresInMinutes: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	if len(up.ProtectedTasks) != 1 || len(up.Failures) != 0 || !up.ProtectedTasks[0].ProtectionEnabled ||
		aws.ToString(up.ProtectedTasks[0].TaskArn) != running[0].ARN {
		t.Fatalf("UpdateTaskProtection: %+v, failures %+v", up.ProtectedTasks, up.Failures)
	}
	near(t, "expirationDate", up.ProtectedTasks[0].ExpirationDate, before.Add(5*time.Minute), 5*time.Second)
	if task, _ := f.Task(running[0].ID); !task.Protected || !task.ProtectionExpiresAt.Equal(*up.ProtectedTasks[0].ExpirationDate) {
		t.Fatalf("fake's view after protecting: %+v", task)
	}
	gp, err := c.GetTaskProtection(ctx, &ecs.GetTaskProtectionInput{Cluster: cluster,
		Tasks: []string{running[0].ARN, running[1].ID, "ffffffffffffffffffffffffffffffff"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(gp.ProtectedTasks) != 2 || len(gp.Failures) != 1 || aws.ToString(gp.Failures[0].Reason) != "MISSING" {
		t.Fatalf("GetTaskProtection: %+v, failures %+v", gp.ProtectedTasks, gp.Failures)
	}
	if p := gp.ProtectedTasks[0]; !p.ProtectionEnabled || !p.ExpirationDate.Equal(*up.ProtectedTasks[0].ExpirationDate) {
		t.Fatalf("protected task reads back as %+v", p)
	}
	if p := gp.ProtectedTasks[1]; p.ProtectionEnabled || p.ExpirationDate != nil || aws.ToString(p.TaskArn) != running[1].ARN {
		t.Fatalf("unprotected task reads back as %+v", p)
	}
	up, err = c.UpdateTaskProtection(ctx, &ecs.UpdateTaskProtectionInput{Cluster: cluster,
		Tasks: []string{running[0].ID}, ProtectionEnabled: false})
	if err != nil {
		t.Fatal(err)
	}
	if p := up.ProtectedTasks[0]; p.ProtectionEnabled || p.ExpirationDate != nil {
		t.Fatalf("disabling answered %+v", p)
	}
	if task, _ := f.Task(running[0].ID); task.Protected {
		t.Fatal("still protected after disabling")
	}
	_, err = c.UpdateTaskProtection(ctx, &ecs.UpdateTaskProtectionInput{Cluster: cluster,
		Tasks: []string{running[0].ID}, ProtectionEnabled: true, ExpiresInMinutes: aws.Int32(2881)})
	wantAPIError[*types.InvalidParameterException](t, "protection for 2881 minutes", err)
	_, err = c.UpdateTaskProtection(ctx, &ecs.UpdateTaskProtectionInput{Cluster: cluster,
		Tasks: slices.Repeat([]string{running[0].ID}, 11), ProtectionEnabled: true})
	wantAPIError[*types.InvalidParameterException](t, "protection of 11 tasks", err)

	// Scale to zero: the stopped tasks are listed with desiredStatus
	// STOPPED and described with how they stopped.
	if _, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: cluster, Service: aws.String("workers"), DesiredCount: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every task stopped", func() bool {
		for _, task := range f.Tasks("workers") {
			if task.LastStatus != ecsfake.StatusStopped {
				return false
			}
		}
		return true
	})
	lr, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: cluster, ServiceName: aws.String("workers"), DesiredStatus: types.DesiredStatusStopped})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lr.TaskArns)
	if !slices.Equal(lr.TaskArns, want) {
		t.Fatalf("stopped tasks listed: %v, want %v", lr.TaskArns, want)
	}
	if lr, err = c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: cluster, ServiceName: aws.String("workers")}); err != nil || len(lr.TaskArns) != 0 {
		t.Fatalf("running tasks listed after scale-in: %v, %v", lr.TaskArns, err)
	}
	dt, err = c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: cluster, Tasks: []string{running[2].ARN}})
	if err != nil {
		t.Fatal(err)
	}
	st := dt.Tasks[0]
	if aws.ToString(st.LastStatus) != "STOPPED" || aws.ToString(st.DesiredStatus) != "STOPPED" ||
		st.StopCode != types.TaskStopCodeServiceSchedulerInitiated ||
		!strings.HasPrefix(aws.ToString(st.StoppedReason), "Scaling activity initiated by (deployment ecs-svc/") ||
		st.StoppingAt == nil || st.StoppedAt == nil || st.ExecutionStoppedAt == nil ||
		st.Containers[0].ExitCode == nil || *st.Containers[0].ExitCode != 0 {
		t.Fatalf("stopped task %+v, container %+v", st, st.Containers[0])
	}
	near(t, "stoppedAt", st.StoppedAt, time.Now(), waitTimeout)
	if _, err := c.GetTaskProtection(ctx, &ecs.GetTaskProtectionInput{Cluster: cluster, Tasks: []string{running[2].ID}}); err != nil {
		t.Fatal(err)
	}

	for op, atLeast := range map[string]int{ecsfake.OpDescribeServices: 5, ecsfake.OpUpdateService: 5, ecsfake.OpListTasks: 7,
		ecsfake.OpDescribeTasks: 3, ecsfake.OpGetTaskProtection: 2, ecsfake.OpUpdateTaskProtection: 4} {
		if got := f.Calls(op); got < atLeast {
			t.Errorf("Calls(%s) = %d, want at least %d", op, got, atLeast)
		}
	}
}

// TestAPIRefusesWhatTheSDKWouldNotSend covers requests a correctly
// configured SDK client never makes: unsigned, wrongly scoped, unknown
// operations.
func TestAPIRefusesWhatTheSDKWouldNotSend(t *testing.T) {
	t.Parallel()
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{serviceConfig(t, "", "svc", "serve")}})

	cfg := f.AWSConfig()
	cfg.Region = "eu-west-1"
	_, err := ecs.NewFromConfig(cfg, fastRetries(1)).DescribeServices(t.Context(), &ecs.DescribeServicesInput{Services: []string{"svc"}})
	wantCode(t, "a client signing for another region", err, "InvalidSignatureException")

	for _, tc := range []struct {
		name, target, auth, code string
	}{
		{"unsigned", "AmazonEC2ContainerServiceV20141113.DescribeServices", "", "MissingAuthenticationTokenException"},
		{"unknown operation", "AmazonEC2ContainerServiceV20141113.CreateService",
			"AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00", "UnknownOperationException"},
		{"another service", "DynamoDB_20120810.ListTables", "", "UnknownOperationException"},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL()+"/", strings.NewReader(`{"services":["svc"]}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Amz-Target", tc.target)
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		err = jsonDecode(resp, &body)
		if err != nil || resp.StatusCode != http.StatusBadRequest || body.Type != tc.code {
			t.Errorf("%s: %d %+v (%v), want 400 %s", tc.name, resp.StatusCode, body, err, tc.code)
		}
	}

	// The default cluster, when the service is in it.
	c := newClient(f)
	ds, err := c.DescribeServices(t.Context(), &ecs.DescribeServicesInput{Services: []string{"svc"}})
	if err != nil || len(ds.Services) != 1 || aws.ToString(ds.Services[0].ClusterArn) != f.ClusterARN("default") {
		t.Fatalf("DescribeServices in the default cluster: %+v, %v", ds, err)
	}
}
