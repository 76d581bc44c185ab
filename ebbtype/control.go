package ebbtype

import (
	"encoding/json"
	"time"
)

// ControlPlaneLeaderName is what the replicas of `ebb server` elect a leader
// of; the client reads the same election to say whether a control plane runs.
const ControlPlaneLeaderName = "control-plane"

// Leadership is the state of a control-plane election.
type Leadership struct {
	LeaderID  string    `json:"leader_id"`
	Term      int64     `json:"term"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Decision is one scaling decision as stored in the fenced decision log.
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
	// Inputs are the metrics the decision saw, a JSON object.
	Inputs json.RawMessage `json:"inputs"`
	// Drained names the workers asked to drain by a scale-in.
	Drained []string `json:"drained,omitempty"`
}
