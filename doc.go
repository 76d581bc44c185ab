// Package ebb is a distributed task queue whose workers scale to zero when idle
// and come back the moment work arrives, without ever killing a running task.
//
// A Client enqueues tasks into a broker; Workers fetch them, run the handler
// registered for their kind, and record the outcome. Delivery is at least
// once: a task is acknowledged only after its handler returns, a worker that
// dies loses its lease and the task runs again, and a task that can never
// succeed ends in the dead state with its error history — nothing is dropped.
//
// Brokers are drivers behind one seam (package ebbdriver): ebbredis for
// fleets and ebbsqlite as the embedded default. Every driver passes the same
// conformance suite, so code written against this package behaves the same
// on each.
//
//	drv, _ := ebbsqlite.Open(ctx, "ebb.db", nil)
//	handlers := ebb.NewHandlers()
//	ebb.Handle(handlers, func(ctx context.Context, t *ebb.Task[EmailArgs]) (string, error) {
//		return send(ctx, t.Args.To)
//	})
//	client, _ := ebb.NewClient(drv, nil)
//	client.Enqueue(ctx, EmailArgs{To: "a@example.com"}, nil)
//	worker, _ := ebb.NewWorker(drv, &ebb.WorkerConfig{Handlers: handlers})
//	worker.Run(ctx) // until ctx is cancelled; then drains
package ebb
