package ebbtype

import "time"

// QueueStats are a queue's counts.
type QueueStats struct {
	Name      string `json:"name"`
	Queued    int64  `json:"queued"`    // ready to run now
	Scheduled int64  `json:"scheduled"` // scheduled or retrying (not yet due, or due and not yet promoted)
	// DueScheduled counts scheduled tasks already due (waiting for
	// promotion): work the autoscaler must count as queued.
	DueScheduled int64 `json:"due_scheduled"`
	// NextDueAt is when the earliest scheduled task becomes due; zero if none.
	NextDueAt time.Time `json:"next_due_at,omitzero"`
	InFlight  int64     `json:"in_flight"` // running (claimed by a worker)
	Dead      int64     `json:"dead"`
	Enqueued  int64     `json:"enqueued"`  // running total of stored tasks (duplicates not counted)
	Succeeded int64     `json:"succeeded"` // running total
	Failed    int64     `json:"failed"`    // running total of tasks that went dead
	Retried   int64     `json:"retried"`   // running total of failed attempts that were retried
	// OldestQueuedAt is the RunAt of the longest-waiting queued task; zero
	// when none is queued.
	OldestQueuedAt time.Time `json:"oldest_queued_at,omitzero"`
}

// WorkerInfo is a worker registry entry.
type WorkerInfo struct {
	ID          string    `json:"id"`
	Pool        string    `json:"pool,omitempty"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Queues      []string  `json:"queues"`
	Concurrency int       `json:"concurrency"`
	Busy        int       `json:"busy"`
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	Draining    bool      `json:"draining"`
	// Drained is set once a draining worker holds nothing and has released
	// any scale-in protection, and stays up only to be stopped by its
	// platform (targets that implement target.Retirer).
	Drained bool   `json:"drained,omitempty"`
	Version string `json:"version,omitempty"`
}
