package ebbdriver

import (
	"context"
	"errors"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// ErrNotLeader means the caller does not hold the leadership it claimed: its
// term ended (it missed renewals and another process was elected). Whatever it
// was about to do must not happen.
var ErrNotLeader = errors.New("not the leader: leadership expired or moved to another process")

// Control is what the control plane needs from a broker beyond tasks: leader
// election with fencing, and the scaling decision log.
type Control interface {
	// LeaderAttempt elects or renews the leader of name. If nobody leads or
	// the leadership expired before Now, the caller becomes leader with a
	// Term one higher than the last (terms never repeat, even after the
	// leader key expired). If the caller leads, its expiry moves to Now+TTL
	// and the term stays. Otherwise nothing changes and the answer names the
	// current leader. The caller leads iff the answer's LeaderID is its ID.
	LeaderAttempt(ctx context.Context, params LeaderParams) (*ebbtype.Leadership, error)

	// LeaderResign gives up leadership if the caller holds it, so a
	// successor need not wait for the TTL.
	LeaderResign(ctx context.Context, name, id string) error

	// LeaderGet reads who leads name at now, without standing for election
	// or changing anything: it lets an operator tell "no control plane runs"
	// from "it runs and has nothing to do". It returns nil and no error when
	// nobody leads at now: never elected, resigned, or the lease ended at or
	// before now (the test LeaderAttempt applies, so the two never disagree
	// about the same instant).
	LeaderGet(ctx context.Context, name string, now time.Time) (*ebbtype.Leadership, error)

	// DecisionAppend stores a scaling decision if, atomically, the caller
	// still leads name with the decision's Term; otherwise it returns
	// ErrNotLeader and stores nothing. This is the fence that keeps two
	// leaders from applying decisions at once: a leader applies a decision
	// only after storing it. Seq is assigned by the driver (increasing per
	// broker). The log keeps the newest DecisionLogMax decisions per pool.
	DecisionAppend(ctx context.Context, leaderName string, d *ebbtype.Decision) error

	// DecisionList returns the newest decisions, newest first; Pool "" means
	// all pools.
	DecisionList(ctx context.Context, pool string, limit int) ([]ebbtype.Decision, error)
}

// DecisionLogMax is how many decisions a broker keeps per pool.
const DecisionLogMax = 1000

// LeaderParams are LeaderAttempt's arguments.
type LeaderParams struct {
	Name string // what is led, e.g. "control-plane"
	ID   string // the candidate
	TTL  time.Duration
	Now  time.Time
}
