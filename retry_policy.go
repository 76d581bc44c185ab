package ebb

import (
	"math"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how long to wait before a failed task runs again.
type RetryPolicy interface {
	NextRetry(task *TaskInfo, err error) time.Duration
}

// RetryPolicyFunc adapts a function to RetryPolicy.
type RetryPolicyFunc func(task *TaskInfo, err error) time.Duration

// NextRetry calls f.
func (f RetryPolicyFunc) NextRetry(task *TaskInfo, err error) time.Duration { return f(task, err) }

// ExponentialBackoff waits Base·2^(attempt−1), capped at Max, spread by ±Jitter
// (a fraction) so that tasks failing together do not retry together.
type ExponentialBackoff struct {
	Base   time.Duration
	Max    time.Duration
	Jitter float64
}

// RetryPolicyDefault: 1 s, 2 s, 4 s, … up to an hour, ±20 %.
var RetryPolicyDefault RetryPolicy = ExponentialBackoff{Base: time.Second, Max: time.Hour, Jitter: 0.2}

// NextRetry implements RetryPolicy.
func (b ExponentialBackoff) NextRetry(task *TaskInfo, _ error) time.Duration {
	attempt := max(task.Attempt, 1)
	d := float64(b.Base) * math.Pow(2, float64(attempt-1))
	if b.Max > 0 && d > float64(b.Max) {
		d = float64(b.Max)
	}
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*rand.Float64()-1)
	}
	return time.Duration(d)
}
