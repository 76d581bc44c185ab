package ebbdrivertest

import (
	"context"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
)

func isQueued(queue string) func(ebbdriver.Event) bool {
	return func(ev ebbdriver.Event) bool { return ev.Kind == ebbdriver.EventQueued && ev.Queue == queue }
}

func testListen(t *testing.T, newDriver Factory) {
	t.Run("AllQueues", func(t *testing.T) {
		f := setup(t, newDriver)
		ch := f.listen(ebbdriver.ListenParams{})
		f.enqueue(f.task("x"))
		waitEvent(t, ch, "EventQueued for x", isQueued("x"), nil)
		f.enqueue(f.task("y"))
		waitEvent(t, ch, "EventQueued for y", isQueued("y"), nil)
	})

	t.Run("ClosedOnCancel", func(t *testing.T) {
		f := setup(t, newDriver)
		ctx, cancel := context.WithCancel(f.ctx)
		ch, err := f.d.Listen(ctx, ebbdriver.ListenParams{Queues: []string{"a"}})
		if err != nil {
			t.Fatalf("Listen: %v", err)
		}
		cancel()
		timer := time.NewTimer(eventTimeout)
		defer timer.Stop()
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
			case <-timer.C:
				t.Fatalf("channel still open %v after the context was cancelled", eventTimeout)
			}
		}
	})

	t.Run("MultipleListeners", func(t *testing.T) {
		f := setup(t, newDriver)
		ch1 := f.listen(ebbdriver.ListenParams{Queues: []string{"a"}})
		ch2 := f.listen(ebbdriver.ListenParams{Queues: []string{"b", "a"}})
		f.enqueue(f.task("a"))
		waitEvent(t, ch1, "EventQueued for a on the first listener", isQueued("a"), nil)
		waitEvent(t, ch2, "EventQueued for a on the second listener", isQueued("a"), nil)
	})

	t.Run("QueuedEventForSubscribedQueue", func(t *testing.T) {
		f := setup(t, newDriver)
		ch := f.listen(ebbdriver.ListenParams{Queues: []string{"a"}})
		notB := func(ev ebbdriver.Event) bool { return !(ev.Kind == ebbdriver.EventQueued && ev.Queue != "a") }
		// b's task goes first: a listener that ignored its Queues would see
		// b's event before a's.
		f.enqueue(f.task("b"))
		f.enqueue(f.task("a"))
		waitEvent(t, ch, "EventQueued for a", isQueued("a"), notB)
		// Emptied again, so the next task of a must be announced (one
		// added behind a Queued task need not be).
		check(t, "fetched from a", 1, len(f.fetch(f.now, 10, "a").Tasks))
		f.enqueue(f.task("b"), f.task("a"))
		waitEvent(t, ch, "second EventQueued for a", isQueued("a"), notB)
	})

	t.Run("QueuedEventOnEveryReturnToQueued", func(t *testing.T) {
		f := setup(t, newDriver)
		ch := f.listen(ebbdriver.ListenParams{Queues: []string{"a"}})
		isA := func(ev ebbdriver.Event) bool { return ev.Kind == ebbdriver.EventQueued && ev.Queue == "a" }
		f.enqueue(f.task("a"), f.task("a"), f.task("a"), f.task("a", withMaxAttempts(1)))
		waitEvent(t, ch, "EventQueued after enqueue", isA, nil)

		rs := f.fetch(f.now, 4, "a").Tasks
		check(t, "fetched", 4, len(rs))
		drainEvents(ch)
		f.completeOK(completion(rs[0], ebbdriver.OutcomeHandBack, f.now))
		waitEvent(t, ch, "EventQueued after hand-back", isA, nil)

		drainEvents(ch)
		f.completeOK(retry(rs[1], f.now, f.now, "try again now"))
		waitEvent(t, ch, "EventQueued after an immediate retry", isA, nil)

		drainEvents(ch)
		if _, err := f.d.RescueExpired(f.ctx, "a", f.at(time.Hour), 10); err != nil {
			t.Fatalf("RescueExpired: %v", err)
		}
		waitEvent(t, ch, "EventQueued after lease rescue", isA, nil)

		drainEvents(ch)
		f.enqueue(f.task("a", withRunAt(f.at(time.Minute))))
		drainEvents(ch)
		if n, err := f.d.PromoteDue(f.ctx, "a", f.at(2*time.Hour), 10); err != nil || n == 0 {
			t.Fatalf("PromoteDue = %d, %v; want at least one promoted", n, err)
		}
		waitEvent(t, ch, "EventQueued after promotion", isA, nil)
	})
}

// drainEvents discards events already delivered, so the next waitEvent sees
// only what the following step causes.
func drainEvents(ch <-chan ebbdriver.Event) {
	for {
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}
