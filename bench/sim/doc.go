// Package sim is a discrete-event simulation of task queues and worker
// fleets: it replays task-arrival traces through ebb's real scaling policy
// (internal/controlplane/policy, driven the way internal/controlplane/pool.go drives it)
// and through baseline autoscalers modelled from their documentation, and
// measures what each costs (worker-seconds), how long tasks wait, and how
// many running tasks scale-in interrupts.
//
// Time is virtual: a run is a loop over a heap of timed events, so a day of
// traffic replays in milliseconds and every run is a pure function of its
// trace and seed.
//
// # The model
//
// A task arrives, waits in one FIFO queue, is claimed by a worker with a
// free slot and runs for its duration. A worker has Concurrency slots; it
// is launched, spends Startup starting (billed: Fargate bills from launch),
// then fetches. An enqueue wakes every waiting worker; ebb's workers pack
// (the oldest with room fetches first, the others defer), so the claimant is
// the oldest worker with room; without packing (the baselines, and ebb's
// "without packing" variant) the first to reach the broker wins, a random
// worker with room. It claims as many tasks as it has free slots (ebb
// fetches in batches). Random claims spread tasks across workers, which
// matters to a scaler that may stop only idle workers.
//
// Two ways to shrink a fleet:
//
//   - drain (ebb): the server asks an idle worker to drain; it exits at
//     once, and nothing is interrupted.
//   - terminate (ECS, Kubernetes): the platform picks a replica regardless
//     of what it runs and sends SIGTERM. The worker stops fetching; tasks
//     that finish within the grace period (30 s: Kubernetes'
//     terminationGracePeriodSeconds and ECS's stopTimeout defaults) complete,
//     the rest are killed. A killed task is interrupted: it becomes visible
//     again VisibilityTimeout after it was received (SQS, or Kombu's Redis
//     visibility_timeout with acks_late) and runs again from the start. After
//     MaxDeliveries receives it is dead-lettered (CDK's DLQ maxReceiveCount
//     3) and counted lost.
//
// Cost is the sum over workers of (exit − launch). Wait is arrival → start
// of the attempt that completed; a task that never completes waits +Inf.
package sim
