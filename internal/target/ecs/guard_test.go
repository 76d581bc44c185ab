package ecs

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/ebbq/ebb/internal/ecsfake"
	"github.com/ebbq/ebb/internal/target"
)

// TestGuardProtectsAllButDrained: with GuardTasks the target holds the
// tasks' scale-in protection itself (for workers that cannot, such as
// Celery's): Protect protects exactly the tasks it is given and releases
// the rest, sends nothing when nothing changed, and Retire lowers the count
// only once every other task is protected, so that ECS (the fake's
// scheduler, which picks at random among unprotected tasks) stops the
// retired one and no other.
func TestGuardProtectsAllButDrained(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, err := ecsfake.New(ecsfake.Config{
		Services: []ecsfake.ServiceConfig{{Cluster: testCluster, Name: testService, Command: []string{"sleep", "600"},
			StopTimeout: 2 * time.Second, DesiredCount: 3}},
		Region: testRegion,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	tg, err := New(ctx, Config{Cluster: testCluster, Service: testService, Region: testRegion, Endpoint: f.URL(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""), GuardTasks: true})
	if err != nil {
		t.Fatal(err)
	}
	if !tg.Guarding() {
		t.Fatal("Guarding() is false with GuardTasks")
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := f.Wait(wctx, func() bool { return f.RunningCount(testService) == 3 }); err != nil {
		t.Fatalf("three tasks running: %v", err)
	}
	ins, err := tg.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var idsRunning []string
	for _, in := range ins {
		if in.State == target.StateRunning {
			idsRunning = append(idsRunning, in.ID)
		}
	}
	if len(idsRunning) != 3 {
		t.Fatalf("instances %+v, want three running", ins)
	}
	a, b, c := idsRunning[0], idsRunning[1], idsRunning[2]
	protected := func() []string {
		var out []string
		for _, tk := range f.Tasks(testService) {
			if tk.Protected {
				out = append(out, tk.ID)
			}
		}
		slices.Sort(out)
		return out
	}
	want := func(ids ...string) []string { slices.Sort(ids); return ids }

	// b is left unprotected: retiring c must wait, or ECS could stop b.
	if err := tg.Protect(ctx, []string{a}); err != nil {
		t.Fatal(err)
	}
	if got := protected(); !slices.Equal(got, want(a)) {
		t.Errorf("protected %v, want only %s", got, a)
	}
	if err := tg.Retire(ctx, []string{c}); err != nil {
		t.Fatal(err)
	}
	if d := f.DesiredCount(testService); d != 3 {
		t.Errorf("Retire lowered the count to %d while another task was unprotected", d)
	}

	if err := tg.Protect(ctx, []string{a, b}); err != nil {
		t.Fatal(err)
	}
	calls := f.Calls(ecsfake.OpUpdateTaskProtection)
	if err := tg.Protect(ctx, []string{b, a, "ecs-pending-1"}); err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(ecsfake.OpUpdateTaskProtection); n != calls {
		t.Errorf("an unchanged Protect sent %d UpdateTaskProtection calls", n-calls)
	}
	if got := protected(); !slices.Equal(got, want(a, b)) {
		t.Errorf("protected %v, want %s and %s", got, a, b)
	}
	if err := tg.Retire(ctx, []string{c}); err != nil {
		t.Fatal(err)
	}
	if d := f.DesiredCount(testService); d != 2 {
		t.Fatalf("desired %d after retiring one of three protected-but-one tasks, want 2", d)
	}
	if err := f.Wait(wctx, func() bool { return len(f.Events()) == 1 }); err != nil {
		t.Fatalf("a stop: %v", err)
	}
	if e := f.Events()[0]; e.TaskID != c || e.Reason != ecsfake.StopScaleIn || e.Protected {
		t.Errorf("ECS stopped %+v, want a scale-in of the retired task %s", e, c)
	}
}
