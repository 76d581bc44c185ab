package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testredis"
)

const (
	partitionLease     = 3 * time.Second
	partitionHeartbeat = "500ms"
)

// partitioned is a Redis the test's namespace reaches only over its veth,
// and a worker in that namespace.
type partitioned struct {
	ns      *netns
	b       *broker
	nsURL   string // the Redis as the namespace sees it
	hostURL string
}

func newPartitioned(t *testing.T) *partitioned {
	t.Helper()
	ns := newNetns(t)
	// Clients from the namespace are not loopback, which protected mode
	// would turn away; nothing but the test's namespace can reach them.
	srv := testredis.StartWith(t, "--bind", "127.0.0.1 "+ns.hostAddr, "--protected-mode", "no")
	p := &partitioned{ns: ns, hostURL: srv.URL(), nsURL: "redis://" + ns.hostAddr + ":" + strconv.Itoa(srv.Port) + "/0"}
	b := &broker{kind: "redis", url: srv.URL()}
	drv, err := ebbredis.Open(t.Context(), srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	b.drv = drv
	if b.client, err = ebb.NewClient(drv, nil); err != nil {
		t.Fatal(err)
	}
	p.b = b
	return p
}

func (p *partitioned) workerFlags(id, url string) []string {
	return []string{"worker", "--id", id, "--broker", url, "--concurrency", "1",
		"--lease", partitionLease.String(), "--heartbeat", partitionHeartbeat}
}

// TestPartitionShorterThanALease cuts a worker off from Redis for less than
// its lease while it runs a task: it keeps the task, renews once the
// network is back, and the task succeeds at attempt 1 with no error, run
// once.
func TestPartitionShorterThanALease(t *testing.T) {
	t.Parallel()
	p := newPartitioned(t)
	a := p.ns.startEbb(t, "part-a", p.workerFlags("part-a", p.nsURL)...)
	id := p.b.enqueueSleep(t, 1, 5000)[0]
	waitFor(t, 20*time.Second, "the task to run on part-a", func() (bool, string) {
		r := p.b.task(t, id)
		return r.State == ebb.StateRunning && r.WorkerID == "part-a", describe(r)
	}, a)

	p.ns.cut()
	cutFor := partitionLease * 2 / 5
	time.Sleep(cutFor) // the partition itself: what is tested is what happens across it
	p.ns.heal()

	var final *ebbtype.TaskInfo
	waitFor(t, 20*time.Second, "the task to finish", func() (bool, string) {
		final = p.b.task(t, id)
		return final.State.Terminal(), describe(final)
	}, a)
	if final.State != ebb.StateSucceeded || final.Attempt != 1 || final.WorkerID != "part-a" || len(final.Errors) != 0 {
		t.Fatalf("after a %s partition (lease %s) the task is %s, want succeeded on part-a at attempt 1 with no error",
			cutFor, partitionLease, describe(final))
	}
	if strings.Contains(a.output(), "lease expired") {
		t.Errorf("part-a gave up its lease over a partition shorter than the lease:\n%s", a.tail(2000))
	}
	a.stop(20 * time.Second)
}

// TestPartitionLongerThanALease cuts a worker off from Redis for longer
// than its lease while it runs a task. Past the lease, the cut-off worker
// cancels its handler by its own clock and drops the outcome; a worker on
// the host rescues the task and runs it to success; once the network is
// back, nothing of the first run is stored: the task ends with the second
// worker's result at attempt 2 and one "lease expired" error naming the
// first.
func TestPartitionLongerThanALease(t *testing.T) {
	t.Parallel()
	p := newPartitioned(t)
	a := p.ns.startEbb(t, "part-a", p.workerFlags("part-a", p.nsURL)...)
	const sleepMS = 6000
	id := p.b.enqueueSleep(t, 1, sleepMS)[0]
	var onA *ebbtype.TaskInfo
	waitFor(t, 20*time.Second, "the task to run on part-a", func() (bool, string) {
		onA = p.b.task(t, id)
		return onA.State == ebb.StateRunning && onA.WorkerID == "part-a", describe(onA)
	}, a)

	p.ns.cut()
	cutAt := time.Now()
	bw := startEbb(t, "", "part-b", p.workerFlags("part-b", p.hostURL)...)
	var onB *ebbtype.TaskInfo
	waitFor(t, 20*time.Second, "the task to be rescued onto part-b", func() (bool, string) {
		onB = p.b.task(t, id)
		return onB.State == ebb.StateRunning && onB.WorkerID == "part-b", describe(onB)
	}, bw)
	waitFor(t, 10*time.Second, "part-a to cancel its handler when its lease ran out", func() (bool, string) {
		return strings.Contains(a.output(), "lease expired without a renewal"), "not in part-a's log yet"
	}, a)
	cancelledAfter := time.Since(cutAt)
	// Heal while part-b still runs the task: part-a is back on the network
	// with a stale claim, and must not be able to store anything for it.
	p.ns.heal()

	var final *ebbtype.TaskInfo
	waitFor(t, 30*time.Second, "the task to finish on part-b", func() (bool, string) {
		final = p.b.task(t, id)
		return final.State.Terminal(), describe(final)
	}, a, bw)
	if final.State != ebb.StateSucceeded || final.WorkerID != "part-b" || final.Attempt != 2 {
		t.Fatalf("final task %s, want succeeded on part-b at attempt 2", describe(final))
	}
	if want := fmt.Sprintf(`{"slept_ms":%d}`, sleepMS); string(final.Result) != want || !final.StartedAt.Equal(onB.StartedAt) {
		t.Errorf("final result %s from the run started %s, want part-b's %s from %s", final.Result, final.StartedAt, want, onB.StartedAt)
	}
	if len(final.Errors) != 1 || !strings.HasPrefix(final.Errors[0].Error, "lease expired") || final.Errors[0].WorkerID != "part-a" {
		t.Errorf("error history %+v, want one \"lease expired\" entry naming part-a", final.Errors)
	}
	if s := p.b.stats(t, ebb.QueueDefault); s.Succeeded != 1 {
		t.Errorf("queue counts %d successes for one task: part-a's run must not count", s.Succeeded)
	}
	if cancelledAfter > partitionLease+3*time.Second {
		t.Errorf("part-a cancelled its handler %s after the cut, want within about a lease (%s)", cancelledAfter, partitionLease)
	}
	t.Logf("cut for longer than the %s lease: part-a cancelled its handler %s after the cut; part-b ran the task", partitionLease, cancelledAfter.Round(time.Millisecond))
	a.stop(20 * time.Second)
	bw.stop(20 * time.Second)
}
