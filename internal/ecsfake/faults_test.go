package ecsfake_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/ebbq/ebb/internal/ecsfake"
)

// TestThrottling: injected throttles reach the SDK as throttling errors:
// its retryer retries them (and succeeds once they stop), and with a
// single attempt the call fails with error code ThrottlingException.
func TestThrottling(t *testing.T) {
	t.Parallel()
	sc := serviceConfig(t, "ebb", "workers", "serve")
	f := start(t, ecsfake.Config{Services: []ecsfake.ServiceConfig{sc}})
	ctx := t.Context()
	describe := &ecs.DescribeServicesInput{Cluster: aws.String("ebb"), Services: []string{"workers"}}

	// Two throttles, three attempts: the SDK retries through them.
	f.SetThrottle(ecsfake.OpDescribeServices, ecsfake.Throttle{Next: 2})
	if _, err := newClient(f, fastRetries(3)).DescribeServices(ctx, describe); err != nil {
		t.Fatalf("with retries: %v", err)
	}
	if calls, throttled := f.Calls(ecsfake.OpDescribeServices), f.ThrottledCalls(ecsfake.OpDescribeServices); calls != 3 || throttled != 2 {
		t.Fatalf("calls %d, throttled %d, want 3 and 2", calls, throttled)
	}

	// One attempt: the throttle is the error, as the SDK classifies it.
	once := newClient(f, func(o *ecs.Options) { o.RetryMaxAttempts = 1 })
	f.SetThrottle(ecsfake.OpDescribeServices, ecsfake.Throttle{Next: 1})
	_, err := once.DescribeServices(ctx, describe)
	wantCode(t, "a throttled call", err, "ThrottlingException")
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary {
		t.Errorf("the SDK does not classify %v as a throttle", err)
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) != aws.TrueTernary {
		t.Errorf("the SDK does not classify %v as retryable", err)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadRequest {
		t.Errorf("throttle's HTTP status: %v", err)
	}
	if _, err := once.DescribeServices(ctx, describe); err != nil {
		t.Fatalf("after the throttle: %v", err)
	}

	// Every second call; other operations untouched.
	list := &ecs.ListTasksInput{Cluster: aws.String("ebb")}
	f.SetThrottle(ecsfake.OpListTasks, ecsfake.Throttle{Every: 2})
	for i := 1; i <= 4; i++ {
		_, err := once.ListTasks(ctx, list)
		if throttled := err != nil; throttled != (i%2 == 0) {
			t.Fatalf("ListTasks call %d: %v", i, err)
		}
		if _, err := once.DescribeServices(ctx, describe); err != nil {
			t.Fatalf("DescribeServices while ListTasks is throttled: %v", err)
		}
	}
	f.SetThrottle(ecsfake.OpListTasks, ecsfake.Throttle{})

	// A fraction, for every operation without its own setting.
	f.SetThrottle(ecsfake.AllOps, ecsfake.Throttle{Fraction: 1})
	_, err = once.GetTaskProtection(ctx, &ecs.GetTaskProtectionInput{Cluster: aws.String("ebb"), Tasks: []string{"x"}})
	wantCode(t, "GetTaskProtection under a fraction of 1", err, "ThrottlingException")
	_, err = once.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("ebb"), Service: aws.String("workers"), DesiredCount: aws.Int32(1)})
	wantCode(t, "UpdateService under a fraction of 1", err, "ThrottlingException")
	f.SetThrottle(ecsfake.OpUpdateService, ecsfake.Throttle{Fraction: 0.000001})
	if _, err := once.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("ebb"), Service: aws.String("workers"), DesiredCount: aws.Int32(1)}); err != nil {
		t.Fatalf("UpdateService with its own setting: %v", err)
	}
	f.SetThrottle(ecsfake.AllOps, ecsfake.Throttle{})
	f.SetThrottle(ecsfake.OpUpdateService, ecsfake.Throttle{})

	// Agent faults.
	task := runningReady(t, f, sc, 1)[0]
	agent := f.URL() + "/api/" + task.ID + "/task-protection/v1/state"
	put := func() (int, map[string]any) {
		t.Helper()
		return httpJSON(t, http.MethodPut, agent, `{"ProtectionEnabled":true,"ExpiresInMinutes":5}`)
	}
	f.SetAgentFault(ecsfake.AgentFault{Mode: ecsfake.AgentHTTP500, Next: 2})
	for range 2 {
		if status, resp := put(); status != http.StatusInternalServerError || field(t, resp, "error", "Code") != "ServerException" ||
			field(t, resp, "error", "Arn") != task.ARN {
			t.Fatalf("failing agent PUT: %d %v", status, resp)
		}
	}
	if got, _ := f.Task(task.ID); got.Protected {
		t.Fatal("a failed agent PUT protected the task")
	}
	if status, resp := put(); status != http.StatusOK || field(t, resp, "protection", "ProtectionEnabled") != true {
		t.Fatalf("agent PUT after the faults: %d %v", status, resp)
	}
	f.SetAgentFault(ecsfake.AgentFault{Mode: ecsfake.AgentThrottled, Always: true})
	for range 3 {
		if status, resp := put(); status != http.StatusBadRequest || field(t, resp, "error", "Code") != "ThrottlingException" {
			t.Fatalf("throttled agent PUT: %d %v", status, resp)
		}
	}
	if status, _ := httpJSON(t, http.MethodGet, agent, ""); status != http.StatusOK {
		t.Fatalf("agent GET while PUTs fail: %d", status)
	}
	f.SetAgentFault(ecsfake.AgentFault{})
	if status, _ := put(); status != http.StatusOK {
		t.Fatalf("agent PUT after clearing the fault: %d", status)
	}
}
