package httpserver

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are exported on /metrics. Queue gauges are read from the broker at
// scrape time (through the shared cache), so every replica reports the same
// numbers whether it leads or not; pool gauges are the leader's last
// reconcile.
type metrics struct {
	registry *prometheus.Registry
}

func newMetrics(s *Server) *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	m.registry.MustRegister(&collector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var (
	descQueue = func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("ebb_queue_"+name, help, []string{"queue"}, nil)
	}
	descQueued       = descQueue("queued", "Tasks ready to run.")
	descScheduled    = descQueue("scheduled", "Tasks scheduled or retrying, not yet promoted.")
	descDue          = descQueue("due_scheduled", "Scheduled tasks already due.")
	descInFlight     = descQueue("in_flight", "Tasks claimed by workers and not yet acknowledged.")
	descDead         = descQueue("dead", "Dead tasks.")
	descOldest       = descQueue("oldest_age_seconds", "Age of the oldest queued task.")
	descSucceeded    = descQueue("succeeded_total", "Tasks that succeeded.")
	descFailed       = descQueue("failed_total", "Tasks that went dead.")
	descEnqueued     = descQueue("enqueued_total", "Tasks stored.")
	descArrival      = descQueue("arrival_rate", "Tasks enqueued per second, over the last 30 s.")
	descCompletion   = descQueue("completion_rate", "Tasks finished per second, over the last 30 s.")
	descPoolWorkers  = prometheus.NewDesc("ebb_pool_workers", "Workers by state.", []string{"pool", "state"}, nil)
	descPoolDesired  = prometheus.NewDesc("ebb_pool_desired_workers", "Workers the autoscaler wants.", []string{"pool"}, nil)
	descPoolCurrent  = prometheus.NewDesc("ebb_pool_current_workers", "Workers serving or starting.", []string{"pool"}, nil)
	descScrapeFailed = prometheus.NewDesc("ebb_broker_up", "1 if the broker answered the last scrape.", nil, nil)
	descLeader       = prometheus.NewDesc("ebb_server_leader", "1 while this replica leads the control plane.", nil, nil)
	descDecisions    = prometheus.NewDesc("ebb_scaling_decisions_total",
		"Scaling decisions applied by this replica, by pool and direction.", []string{"pool", "action"}, nil)
	descBeatTicks = prometheus.NewDesc("ebb_beat_ticks_total",
		"Schedule ticks this replica enqueued (result enqueued) or found already enqueued (duplicate).", []string{"schedule", "result"}, nil)
)

type collector struct{ s *Server }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueued, descScheduled, descDue, descInFlight, descDead, descOldest,
		descSucceeded, descFailed, descEnqueued, descArrival, descCompletion, descPoolWorkers, descPoolDesired,
		descPoolCurrent, descScrapeFailed, descLeader, descDecisions, descBeatTicks} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.s.cp.QueueStats(ctx, time.Second)
	up := 1.0
	if err != nil {
		up = 0
	}
	queues := QueuesJSON(stats, time.Now(), c.s.cp.Rates)
	if cq, err := c.s.celeryQueues(ctx, time.Now(), time.Second); err == nil {
		queues = append(queues, cq...)
	} else {
		up = 0
	}
	for _, q := range queues {
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, q.Name)
		}
		cnt := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), q.Name)
		}
		g(descQueued, float64(q.Queued))
		g(descScheduled, float64(q.Scheduled))
		g(descDue, float64(q.DueScheduled))
		g(descInFlight, float64(q.InFlight))
		g(descDead, float64(q.Dead))
		g(descOldest, q.OldestAgeS)
		cnt(descSucceeded, q.Succeeded)
		cnt(descFailed, q.Failed)
		cnt(descEnqueued, q.Enqueued)
		g(descArrival, q.ArrivalPerS)
		g(descCompletion, q.CompletionPerS)
	}
	ch <- prometheus.MustNewConstMetric(descScrapeFailed, prometheus.GaugeValue, up)
	for _, v := range c.s.cp.Pools() {
		for state, n := range map[string]int{"busy": v.Busy, "idle": v.Idle, "draining": v.Draining, "starting": v.Starting} {
			ch <- prometheus.MustNewConstMetric(descPoolWorkers, prometheus.GaugeValue, float64(n), v.Name, state)
		}
		ch <- prometheus.MustNewConstMetric(descPoolDesired, prometheus.GaugeValue, float64(v.Desired), v.Name)
		ch <- prometheus.MustNewConstMetric(descPoolCurrent, prometheus.GaugeValue, float64(v.Current), v.Name)
	}
	leading := 0.0
	if c.s.cp.Leading() {
		leading = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, leading)
	counts := c.s.cp.Counters()
	for k, n := range counts.Decisions {
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(n), k.Pool, k.Action)
	}
	for k, n := range counts.BeatTicks {
		ch <- prometheus.MustNewConstMetric(descBeatTicks, prometheus.CounterValue, float64(n), k.Schedule, k.Result)
	}
}
