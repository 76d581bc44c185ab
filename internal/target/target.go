// Package target is the seam between the autoscaler and the places worker
// processes run: local processes now, Kubernetes and ECS later. A target
// starts instances and reports them; it never decides how many there should
// be, and it never stops a busy one on its own: scale-in goes through the
// broker as a drain request to an idle worker, which then exits by itself, so
// the same path works on every platform and across hosts.
package target

import (
	"context"
	"time"
)

// State is an instance's life stage as the platform sees it.
type State string

const (
	// StateStarting: launched, not yet known to be running.
	StateStarting State = "starting"
	// StateRunning: the process, task or pod is alive.
	StateRunning State = "running"
	// StateStopping: the target was told to stop it (shutdown) and it has not
	// exited yet.
	StateStopping State = "stopping"
)

// Instance is one worker process, task or pod.
type Instance struct {
	// ID is the worker id the instance registers with in the broker's worker
	// registry, so the autoscaler can match the two.
	ID        string    `json:"id"`
	State     State     `json:"state"`
	StartedAt time.Time `json:"started_at"`
}

// Target runs a pool's worker instances.
type Target interface {
	// Name is the target kind ("local", "kubernetes", "ecs").
	Name() string

	// Launch starts up to n new instances and returns the ids it started. It
	// may start fewer (or none) while a crash loop is backing off; the
	// autoscaler asks again on its next pass.
	Launch(ctx context.Context, n int) ([]string, error)

	// Instances lists the instances that have not exited.
	Instances(ctx context.Context) ([]Instance, error)

	// Protect tells platforms that choose scale-in victims themselves (ECS
	// task scale-in protection, Kubernetes pod-deletion-cost) which
	// instances are busy and must not be picked. Targets whose platform never
	// removes instances on its own do nothing.
	Protect(ctx context.Context, busy []string) error

	// Shutdown stops every instance: each worker is expected to have been
	// asked to drain already; the target then sends SIGTERM (or the
	// platform's equivalent), and kills what is left after its grace period.
	// It returns when all have exited.
	Shutdown(ctx context.Context) error
}

// Retirer is implemented by targets whose platform owns the replica count
// and picks which replica to stop itself: an ECS service, a Kubernetes
// Deployment. There, scale-in cannot end with the worker exiting, because
// the platform would start a replacement at once. Instead the drained worker
// stays up holding nothing and taking nothing, with its scale-in protection
// released (WorkerInfo.Drained), and the control plane retires it: the target
// lowers the replica count so that the platform, which may only pick an
// unprotected replica, stops one that is drained.
//
// Launch on such a target raises the replica count; Instances reports the
// replicas the platform runs plus, as StateStarting, the ones it was asked
// for and has not listed yet, so the control plane does not ask twice.
// Shutdown leaves the replicas alone: they belong to the platform, and the
// next control-plane replica takes them over.
type Retirer interface {
	// Retire lowers the replica count by one for each id that was not
	// retired before (a retired replica the platform has not stopped yet is
	// not counted twice). It never lowers the count below zero.
	Retire(ctx context.Context, ids []string) error
}

// Reporter is implemented by targets that can say how their platform looks
// and what last went wrong talking to it (an ECS service's counts, a
// throttled API), for the pool's status on the dashboard and the API.
type Reporter interface {
	// Status is one line for people.
	Status() string
	// LastError is the newest failure not yet cleared by a later success.
	LastError() error
}

// Follower is implemented by targets whose replica count another autoscaler
// owns (KEDA, through the server's external scaler). While Following is
// true the control plane neither launches nor drains for the pool: it only
// reports, and keeps calling Protect so that the other autoscaler's
// scale-in, which the platform carries out, picks idle replicas first.
type Follower interface {
	Following() bool
}

// Guard is implemented by targets that can hold the platform's scale-in
// protection from the control plane, for workers that cannot hold their own
// (Celery's on ECS). While Guarding is true, Protect is given every instance
// that must not be stopped: all but the drained ones, idle or busy, since an
// idle worker that still consumes could take a message as it is stopped.
type Guard interface {
	Guarding() bool
}
