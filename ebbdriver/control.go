package ebbdriver

import (
	"context"
	"errors"
	"time"
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
	LeaderAttempt(ctx context.Context, params LeaderParams) (*Leadership, error)

	// LeaderResign gives up leadership if the caller holds it, so a
	// successor need not wait for the TTL.
	LeaderResign(ctx context.Context, name, id string) error

	// DecisionAppend stores a scaling decision if, atomically, the caller
	// still leads name with the decision's Term; otherwise it returns
	// ErrNotLeader and stores nothing. This is the fence that keeps two
	// leaders from applying decisions at once: a leader applies a decision
	// only after storing it. Seq is assigned by the driver (increasing per
	// broker). The log keeps the newest DecisionLogMax decisions per pool.
	DecisionAppend(ctx context.Context, leaderName string, d *Decision) error

	// DecisionList returns the newest decisions, newest first; Pool "" means
	// all pools.
	DecisionList(ctx context.Context, pool string, limit int) ([]Decision, error)
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

// Leadership is the state of an election.
type Leadership struct {
	LeaderID  string    `json:"leader_id"`
	Term      int64     `json:"term"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Decision is one scaling decision as stored in the log.
type Decision struct {
	Seq      int64     `json:"seq"`
	Pool     string    `json:"pool"`
	At       time.Time `json:"at"`
	Term     int64     `json:"term"`
	LeaderID string    `json:"leader_id"`
	From     int       `json:"from"`
	To       int       `json:"to"`
	Action   string    `json:"action"` // up, down
	Reason   string    `json:"reason"`
	// Inputs are the metrics the decision saw, as JSON.
	Inputs []byte `json:"inputs"`
	// Drained names the workers asked to drain by a scale-in.
	Drained []string `json:"drained,omitempty"`
}
