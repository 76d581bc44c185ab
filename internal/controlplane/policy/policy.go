// Package policy decides how many workers a pool should have. It only
// decides: the control plane's scaling loop (internal/controlplane, pool.go)
// gathers the metrics, records each decision in the fenced log and moves the
// pool there without interrupting a task.
//
// The policy is a plain function of (now, metrics, history, policy knobs) so
// it can be unit-tested and replayed by the scaling simulator (bench/sim).
package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Metrics are what one decision sees of a pool.
type Metrics struct {
	// Queued counts tasks ready to run (queued, plus scheduled tasks already
	// due) across the pool's queues.
	Queued int64
	// InFlight counts tasks claimed by workers and not yet acknowledged.
	InFlight int64
	// OldestAge is how long the oldest queued task has waited.
	OldestAge time.Duration
	// Current is how many workers serve the pool now or are starting:
	// registered workers that are not draining, plus launched instances that
	// have not registered yet.
	Current int
	// Busy is how many registered workers hold at least one task.
	Busy int
	// Starting is how many of Current were launched and have not registered
	// yet: capacity already on its way.
	Starting int
}

// Policy holds a pool's knobs (see the config package for their defaults).
type Policy struct {
	Min, Max    int
	Concurrency int
	// BacklogPerWorker is how many tasks (queued + in flight) one worker is
	// expected to hold; zero means Concurrency.
	BacklogPerWorker int
	// MaxWait is the age SLO: while the oldest queued task has waited longer,
	// the pool grows by at least one worker per decision.
	MaxWait time.Duration
	// ScaleDownDelay: the pool shrinks only to the largest size wanted within
	// this window, so a lull between bursts does not cause flapping.
	// Derived (negative) takes it from Startup (see Resolve).
	ScaleDownDelay time.Duration
	// IdleBeforeZero: the last worker goes only after queued and in-flight have
	// both been zero this long. Derived (negative) takes it from Startup.
	IdleBeforeZero time.Duration
	// MaxStep caps workers added by one decision; zero means no cap.
	MaxStep int
	// Startup is how long a launched worker takes to serve (launch →
	// registered), as the control plane measures it: what the derived
	// delays are the break-even of.
	Startup time.Duration
}

// Derived, as ScaleDownDelay or IdleBeforeZero, means "derive it from the
// start-up time" (the server's default, unless the config sets them).
const Derived time.Duration = -1

// Resolve returns p with its derived delays filled in from p.Startup, the
// rent-or-buy break-even: a worker kept idle longer than a start-up costs
// more than starting a new one when work returns, and keeping it exactly
// that long never costs more than twice the best choice made with hindsight.
// So an idle worker the backlog no longer needs is drained at once (scale-down
// delay 0: packing empties whole workers, so the pool's want already follows
// the load), and the last one is kept for one start-up before zero.
func (p Policy) Resolve() Policy {
	if p.ScaleDownDelay < 0 {
		p.ScaleDownDelay = 0
	}
	if p.IdleBeforeZero < 0 {
		p.IdleBeforeZero = max(p.Startup, 0)
	}
	return p
}

// History is what a policy remembers between decisions. The zero value is a
// fresh start; each call to Decide returns the next one.
type History struct {
	samples    []sample // raw wants within the scale-down window, oldest first
	lastActive time.Time
	started    time.Time
}

type sample struct {
	at   time.Time
	want int
}

// Action says which way a decision goes.
type Action string

const (
	ActionUp   Action = "up"
	ActionDown Action = "down"
	ActionHold Action = "hold"
)

// Observed is a pool size decided at a time, as a decision log keeps it.
type Observed struct {
	At   time.Time
	Size int
}

// Resume is the history a new leader starts from. The pool's current size
// counts as wanted now, and the sizes its predecessors decided (recent, from
// the fenced decision log) count as wanted when they were decided, so the
// scale-down delay holds across a change of leader: a successor does not
// shrink a pool its predecessor sized a moment ago, nor undo what it did.
// Like a fresh start, it counts as activity for idle-before-zero.
func Resume(now time.Time, current int, recent []Observed) History {
	h := History{started: now, lastActive: now}
	for _, o := range recent {
		if o.At.Before(now) {
			h.samples = append(h.samples, sample{at: o.At, want: o.Size})
		}
	}
	sort.Slice(h.samples, func(i, j int) bool { return h.samples[i].at.Before(h.samples[j].at) })
	h.samples = append(h.samples, sample{at: now, want: current})
	return h
}

// Fresh reports whether h is the zero History: no decision made yet.
func (h History) Fresh() bool { return h.started.IsZero() }

// Decision is one policy answer.
type Decision struct {
	Desired int
	Action  Action
	// Reason explains the inputs and the rule that decided, in words.
	Reason string
}

// Decide returns the desired worker count for a pool and the history to pass
// to the next call.
//
//	want    = clamp(ceil((queued + in-flight) / backlog-per-worker), min, max)
//	          raised to current+1 while the oldest queued task is older than max wait
//	          and no worker is starting,
//	          never below the busy workers
//	up      : at once (at most max-step more than current)
//	down    : only to the largest want of the last scale-down delay
//	to zero : only after queued and in-flight were zero for idle-before-zero
func Decide(now time.Time, m Metrics, h History, p Policy) (Decision, History) {
	p = p.Resolve()
	if h.started.IsZero() {
		// A fresh history (first decision, or a new leader) counts as activity:
		// workers already running are not stopped before a full idle period.
		h.started, h.lastActive = now, now
	}
	load := m.Queued + m.InFlight
	if load > 0 {
		h.lastActive = now
	}
	per := p.BacklogPerWorker
	if per <= 0 {
		per = max(p.Concurrency, 1)
	}

	var why []string
	want := int((load + int64(per) - 1) / int64(per))
	if m.Queued > 0 && p.MaxWait > 0 && m.OldestAge > p.MaxWait && want <= m.Current {
		// A worker that is starting will take the old task; adding one per
		// decision meanwhile would overshoot to max whenever start-up takes
		// longer than max wait (Fargate's ~45 s against 30 s).
		if m.Starting == 0 {
			want = m.Current + 1
			why = append(why, fmt.Sprintf("oldest %s > max wait %s", round(m.OldestAge), round(p.MaxWait)))
		} else {
			why = append(why, fmt.Sprintf("oldest %s > max wait %s, %d starting", round(m.OldestAge), round(p.MaxWait), m.Starting))
		}
	}
	if want < m.Busy {
		want = m.Busy
		why = append(why, fmt.Sprintf("%d busy workers are never stopped", m.Busy))
	}
	if want > p.Max {
		want = p.Max
		why = append(why, fmt.Sprintf("capped at max %d", p.Max))
	}
	if want < p.Min {
		want = p.Min
		why = append(why, fmt.Sprintf("held at min %d", p.Min))
	}

	// Keep the window of wants for the scale-down rule.
	h.samples = append(h.samples, sample{at: now, want: want})
	cut := 0
	for cut < len(h.samples)-1 && now.Sub(h.samples[cut].at) > p.ScaleDownDelay {
		cut++
	}
	h.samples = append([]sample(nil), h.samples[cut:]...)
	windowMax := 0
	for _, s := range h.samples {
		windowMax = max(windowMax, s.want)
	}

	desired := want
	switch {
	case want > m.Current:
		if p.MaxStep > 0 && want > m.Current+p.MaxStep {
			desired = m.Current + p.MaxStep
			why = append(why, fmt.Sprintf("max step %d", p.MaxStep))
		}
	case want < m.Current:
		if windowMax > want {
			desired = min(windowMax, m.Current)
			why = append(why, fmt.Sprintf("scale-down delay: %d wanted within the last %s", windowMax, round(p.ScaleDownDelay)))
		}
		if desired == 0 {
			if idle := now.Sub(h.lastActive); idle < p.IdleBeforeZero {
				desired = 1
				why = append(why, fmt.Sprintf("idle %s < %s before zero", round(idle), round(p.IdleBeforeZero)))
			} else {
				why = append(why, fmt.Sprintf("idle %s ≥ %s", round(idle), round(p.IdleBeforeZero)))
			}
		}
	}

	d := Decision{Desired: desired, Action: ActionHold}
	switch {
	case desired > m.Current:
		d.Action = ActionUp
	case desired < m.Current:
		d.Action = ActionDown
	}
	inputs := fmt.Sprintf("%d queued, %d in flight", m.Queued, m.InFlight)
	if m.Queued > 0 {
		inputs += ", oldest " + round(m.OldestAge).String()
	}
	if m.Busy > 0 {
		inputs += fmt.Sprintf(", %d busy", m.Busy)
	}
	if len(why) > 0 {
		inputs += ", " + strings.Join(why, ", ")
	}
	d.Reason = fmt.Sprintf("%s → %d→%d workers", inputs, m.Current, desired)
	return d, h
}

// round keeps reasons readable: 3.2s, not 3.214567891s.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}
