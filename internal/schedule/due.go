package schedule

import "time"

// GraceDefault is how late a tick may fire under CatchUpSkip. It covers a
// leader's timer firing late (the reconcile loop's one-second cadence, a
// slow broker round trip, a GC pause) and stays below the ~8 s it takes to
// replace a dead leader, so ticks that fell in a failover are skipped, as
// "skip" promises.
const GraceDefault = 5 * time.Second

// Due decides what fires now. last is the last tick that fired; while it is
// zero, the first tick is the first after created. It returns the tick to
// fire now (ok false: nothing) and the next tick after now, for the caller's
// timer (zero: the schedule never ticks again).
//
// When several ticks were missed, only the latest one can fire, so a leader
// coming back never enqueues a burst. Under CatchUpSkip it fires only if it
// is at most grace old (a tick exactly at now, or exactly grace ago, fires);
// this applies to a single late tick too, since it was just as missed. Any
// policy other than CatchUpSkip means CatchUpOnce. A last in the future (a
// replica with a fast clock fired it) holds everything until after it.
func Due(spec Spec, created, last, now time.Time, policy CatchUp, grace time.Duration) (tick time.Time, ok bool, next time.Time) {
	from := last
	if from.IsZero() {
		from = created
	}
	first := spec.Next(from)
	if first.IsZero() || first.After(now) {
		return time.Time{}, false, first
	}
	tick = latestAtOrBefore(spec, first, now)
	next = spec.Next(now)
	if policy == CatchUpSkip && now.Sub(tick) > grace {
		return time.Time{}, false, next
	}
	return tick, true, next
}

// latestAtOrBefore returns the last tick in [first, now], given that first
// is a tick ≤ now. Specs cannot step backwards, so it bisects for the
// latest x with Next(x) ≤ now: about 60 calls of Next however many ticks
// were missed, where walking them one by one could take millions after a
// long outage of a per-second schedule.
func latestAtOrBefore(spec Spec, first, now time.Time) time.Time {
	if n := spec.Next(first); n.IsZero() || n.After(now) {
		return first // the common case: exactly one tick is due
	}
	lo, hi := first, now // Next(lo) ≤ now < Next(hi)
	for {
		gap := hi.Sub(lo)
		if gap <= 1 {
			break
		}
		mid := lo.Add(gap / 2)
		if n := spec.Next(mid); !n.IsZero() && !n.After(now) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return spec.Next(lo)
}
