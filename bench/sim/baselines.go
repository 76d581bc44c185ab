package sim

import (
	"math"
	"slices"
	"time"
)

// Baselines are modelled from their documentation and source; every
// parameter below names where it comes from. Where a detail is unknown the
// model picks the reading that favours the baseline, and says so.

// ecsScale moves an ECS service to desired running tasks. ECS picks the
// tasks to stop itself (balanced across zones, blind to what a task runs:
// aws-cdk #9242, containers-roadmap #125), modelled as a uniformly random
// choice among the service's tasks.
func ecsScale(f *fleet, desired int) {
	serving := f.serving()
	switch {
	case desired > len(serving):
		f.launch(desired - len(serving))
	case desired < len(serving):
		for range len(serving) - desired {
			i := f.rng.IntN(len(serving))
			f.terminate(serving[i])
			serving = slices.Delete(serving, i, i+1)
		}
	}
}

// k8sScale moves a Deployment to desired replicas. The ReplicaSet
// controller deletes not-yet-ready pods first, then the newest
// (controller.ActivePodsWithRanks), blind to what a pod runs (KEDA #3674,
// #6124).
func k8sScale(f *fleet, desired int) {
	serving := f.serving()
	switch {
	case desired > len(serving):
		f.launch(desired - len(serving))
	case desired < len(serving):
		slices.SortStableFunc(serving, func(a, b *worker) int {
			if (a.state == wStarting) != (b.state == wStarting) {
				if a.state == wStarting {
					return -1
				}
				return 1
			}
			return int(b.launchedAt - a.launchedAt)
		})
		for _, w := range serving[:len(serving)-desired] {
			f.terminate(w)
		}
	}
}

// seedCtl is the design in the seeds (seeds/000, /001, "Scaling Celery
// workers to zero"): a Lambda scheduled with rate(5 minutes) POSTs to
// /api/celery-metrics/, which pushes LLEN + reserved + active for the queue
// to a CloudWatch metric; scale_on_metric with
// ScalingInterval(change=-1, lower=0), ScalingInterval(change=1, lower=1),
// ChangeInCapacity, min_capacity=0, max_capacity=2.
//
//   - Pushed value ≥ 1 → +1 task, value 0 → −1 task (the intended steps;
//     the CDK thresholds these steps generate put both alarms in ALARM at
//     exactly 1 — lower "≤ 1", upper "≥ 1" — which is not modelled).
//   - The step policy acts AlarmLag after a push: CloudWatch evaluates the
//     alarm once a minute. Step-scaling cooldown (300 s, Application Auto
//     Scaling's default for ECS services) equals the push period, so each
//     push moves the service at most one step.
//   - Scale-in is ECS's: a random task is stopped (SIGTERM, 30 s stopTimeout).
//   - Interrupted Celery tasks (acks_late) come back after Kombu's Redis
//     visibility_timeout (1 h default, raised to the longest task).
type seedCtl struct {
	Push, AlarmLag time.Duration
	Max            int
	desired        int
	actions        int
}

func newSeed() *seedCtl {
	return &seedCtl{Push: 5 * time.Minute, AlarmLag: time.Minute, Max: 2}
}

func (c *seedCtl) start(f *fleet) { c.push(f) }

func (c *seedCtl) enqueued(*fleet) {}

func (c *seedCtl) push(f *fleet) {
	v := f.queued() + f.inflight
	f.at(f.now+c.AlarmLag, func() {
		next := max(c.desired-1, 0)
		if v >= 1 {
			next = min(c.desired+1, c.Max)
		}
		if next != c.desired {
			c.desired = next
			c.actions++
			ecsScale(f, next)
		}
	})
	f.at(f.now+c.Push, func() { c.push(f) })
}

// cdkStep is one ScalingInterval above the upper alarm's threshold.
type cdkStep struct {
	Lower  int // metric ≥ Lower
	Change int
}

// cdkCtl is aws-ecs-patterns QueueProcessingFargateService
// (queue-processing-service-base.ts): step scaling on the SQS queue's
// ApproximateNumberOfMessagesVisible, whose CDK default is "Maximum over 5
// minutes"; default scalingSteps [{upper: 0, change: -1}, {lower: 100,
// change: +1}, {lower: 500, change: +5}], which StepScalingPolicy turns
// into a lower alarm "≤ 0" (−1) and an upper alarm "≥ 100" (+1, +5 from
// 500), one evaluation period each.
//
//   - SQS publishes the metric every minute; CloudWatch evaluates each alarm
//     every minute over the last 5 minutes' maximum (delivery delays of the
//     SQS metrics are not modelled, which favours CDK).
//   - Cooldown 300 s (the construct sets none; Application Auto Scaling's
//     default for ECS services): a scale-out during its cooldown adds only
//     what a larger step asks beyond the last one; a scale-in during its
//     cooldown is ignored; a scale-out ends the scale-in cooldown.
//   - Min and max: the construct defaults to 1 and 2; this model uses min 0
//     (scale to zero, as seed 002 sets min_scaling_capacity=0) and the
//     trace's peak need as max, like every scaler here.
//   - The CPU target-tracking policy the construct also adds (50 %) is left
//     out, as with disableCpuBasedScaling: CPU says nothing about a queue.
//   - In-flight messages are invisible to the metric; scale-in stops a
//     random task (SIGTERM, 30 s stopTimeout); an interrupted message is
//     visible again after the queue's visibility timeout — set to the
//     longest task, as it must be (the construct's 30 s default would
//     redeliver every longer task while it runs) — and goes to the
//     dead-letter queue after maxReceiveCount 3 receives.
type cdkCtl struct {
	Key, Name      string
	Min, Max       int
	LowerThreshold int // metric ≤ this → −1
	Steps          []cdkStep
	Period         time.Duration // the metric's statistic period
	Every          time.Duration // metric resolution and alarm evaluation
	Cooldown       time.Duration

	samples   []sampleAt
	desired   int
	upUntil   time.Duration
	downUntil time.Duration
	lastUp    int
	actions   int
}

type sampleAt struct {
	at time.Duration
	v  int
}

func newCDK(maxWorkers int) *cdkCtl {
	return &cdkCtl{
		Key: "cdk", Name: "CDK defaults", Min: 0, Max: maxWorkers,
		LowerThreshold: 0, Steps: []cdkStep{{100, +1}, {500, +5}},
		Period: 5 * time.Minute, Every: time.Minute, Cooldown: 300 * time.Second,
	}
}

// newCDKWake1 is the same construct with the steps users write so that one
// visible message wakes the service ([{upper: 0, change: -1}, {lower: 1,
// change: +1}]; seed 002 used change 0 for the lower step precisely because
// −1 "will try to tear down the task whilst it is processing the last
// message").
func newCDKWake1(maxWorkers int) *cdkCtl {
	c := newCDK(maxWorkers)
	c.Key, c.Name = "cdk-wake1", "CDK, steps wake at 1"
	c.Steps = []cdkStep{{1, +1}}
	return c
}

func (c *cdkCtl) start(f *fleet) {
	c.desired = c.Min
	ecsScale(f, c.desired)
	c.tick(f)
}

func (c *cdkCtl) enqueued(*fleet) {}

func (c *cdkCtl) tick(f *fleet) {
	c.samples = append(c.samples, sampleAt{f.now, f.queued()})
	for len(c.samples) > 0 && c.samples[0].at <= f.now-c.Period {
		c.samples = c.samples[1:]
	}
	m := 0
	for _, s := range c.samples {
		m = max(m, s.v)
	}
	if adj := c.stepFor(m); adj > 0 {
		scaled := false
		if f.now < c.upUntil {
			if adj > c.lastUp {
				scaled = c.set(f, c.desired+adj-c.lastUp)
				c.lastUp = adj
			}
		} else if scaled = c.set(f, c.desired+adj); scaled {
			c.lastUp = adj
			c.upUntil = f.now + c.Cooldown
		}
		if scaled {
			c.downUntil = 0
		}
	} else if m <= c.LowerThreshold && f.now >= c.downUntil {
		if c.set(f, c.desired-1) {
			c.downUntil = f.now + c.Cooldown
		}
	}
	f.at(f.now+c.Every, func() { c.tick(f) })
}

func (c *cdkCtl) stepFor(m int) int {
	adj := 0
	for _, s := range c.Steps {
		if m >= s.Lower {
			adj = s.Change
		}
	}
	return adj
}

func (c *cdkCtl) set(f *fleet, n int) bool {
	n = min(max(n, c.Min), c.Max)
	if n == c.desired {
		return false
	}
	c.desired = n
	c.actions++
	ecsScale(f, n)
	return true
}

// kedaCtl is a KEDA ScaledObject with the Redis list scaler and every
// default (kedacore/keda pkg/scalers/redis_scaler.go,
// apis/keda/v1alpha1, pkg/scaling/executor/scale_scaledobjects.go), and the
// HPA it generates with Kubernetes' defaults (pkg/apis/autoscaling/v2
// defaults.go, kube-controller-manager flags).
//
//   - KEDA polls every pollingInterval 30 s: active = LLEN >
//     activationListLength 0. Active at 0 replicas → 1. Inactive for
//     cooldownPeriod 300 s since the last active poll → 0.
//   - The HPA syncs every 15 s on the external metric LLEN with
//     AverageValue target listLength 5: desired = ceil(LLEN / 5) unless
//     within the 10 % tolerance, clamped to [1, max].
//   - Scale-up: at most max(+4 pods, +100 %) per 15 s, no stabilisation.
//     Scale-down: to the highest recommendation of the last 300 s.
//   - LLEN counts only the list: tasks a worker holds are invisible.
//   - Scale-in deletes pods with the ReplicaSet's ranking (SIGTERM, 30 s
//     terminationGracePeriodSeconds, Celery's warm shutdown finishes what it
//     can). Interrupted tasks come back after Kombu's visibility_timeout
//     (acks_late; 1 h default, raised to the longest task); without
//     acks_late they would be lost outright. The restore is assumed on time
//     even at zero workers, though Kombu restores from a live worker — this
//     favours KEDA.
type kedaCtl struct {
	Poll, Cooldown, Sync, Stabilization time.Duration
	Target                              int
	Tolerance                           float64
	Max                                 int

	replicas   int
	lastActive time.Duration
	recs       []sampleAt
	actions    int
}

func newKEDA(maxWorkers int) *kedaCtl {
	return &kedaCtl{
		Poll: 30 * time.Second, Cooldown: 300 * time.Second, Sync: 15 * time.Second,
		Stabilization: 300 * time.Second, Target: 5, Tolerance: 0.1, Max: maxWorkers,
	}
}

func (c *kedaCtl) start(f *fleet) {
	c.poll(f)
	c.sync(f)
}

func (c *kedaCtl) enqueued(*fleet) {}

func (c *kedaCtl) poll(f *fleet) {
	if f.queued() > 0 {
		c.lastActive = f.now
		if c.replicas == 0 {
			c.set(f, 1)
		}
	} else if c.replicas > 0 && f.now-c.lastActive >= c.Cooldown {
		c.set(f, 0)
		c.recs = nil
	}
	f.at(f.now+c.Poll, func() { c.poll(f) })
}

func (c *kedaCtl) sync(f *fleet) {
	if c.replicas > 0 {
		l := f.queued()
		rec := c.replicas
		ratio := float64(l) / float64(c.Target*c.replicas)
		if math.Abs(ratio-1) > c.Tolerance {
			rec = (l + c.Target - 1) / c.Target
		}
		rec = min(max(rec, 1), c.Max)
		c.recs = append(c.recs, sampleAt{f.now, rec})
		for len(c.recs) > 0 && c.recs[0].at < f.now-c.Stabilization {
			c.recs = c.recs[1:]
		}
		var next int
		if rec > c.replicas {
			next = min(rec, max(c.replicas+4, 2*c.replicas))
		} else {
			high := 0
			for _, r := range c.recs {
				high = max(high, r.v)
			}
			next = min(c.replicas, high)
		}
		if next != c.replicas {
			c.set(f, next)
		}
	}
	f.at(f.now+c.Sync, func() { c.sync(f) })
}

func (c *kedaCtl) set(f *fleet, n int) {
	c.replicas = n
	c.actions++
	k8sScale(f, n)
}

// alwaysOnCtl keeps N workers up for the whole trace, ready before the
// first arrival; N is the clairvoyant peak need, so no task waits.
type alwaysOnCtl struct{ N int }

func (c *alwaysOnCtl) start(f *fleet) { f.launchWarm(c.N) }

func (c *alwaysOnCtl) enqueued(*fleet) {}
