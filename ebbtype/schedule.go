package ebbtype

import (
	"encoding/json"
	"time"
)

// Schedule is a periodic schedule (beat): when it ticks, the task each tick
// enqueues, and its firing state.
type Schedule struct {
	Name string `json:"name"`

	// Exactly one of Cron, Every and At is set. Cron has 5 fields, or 6 with
	// seconds first; TZ names its time zone (IANA, default UTC).
	Cron  string        `json:"cron,omitempty"`
	Every time.Duration `json:"every_ns,omitempty"`
	At    time.Time     `json:"at,omitzero"`
	TZ    string        `json:"tz,omitempty"`

	// CatchUp is what happens to ticks missed while no leader ran: "once"
	// (the latest missed tick fires once) or "skip".
	CatchUp string `json:"catch_up"`

	// The task each tick enqueues.
	Kind        string            `json:"kind"`
	Args        json.RawMessage   `json:"args"`
	Queue       string            `json:"queue"`
	Priority    Priority          `json:"priority,omitempty"`
	MaxAttempts int               `json:"max_attempts,omitempty"`
	Timeout     time.Duration     `json:"timeout_ns,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`

	Paused     bool      `json:"paused"`
	LastTickAt time.Time `json:"last_tick_at,omitzero"`
	LastTaskID string    `json:"last_task_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`

	// Spec, NextRun and Error are not stored: Client.ScheduleList and
	// Client.ScheduleGet fill them in from the definition and the clock.
	Spec    string    `json:"spec,omitempty"`    // the parsed definition, e.g. "@every 1m0s from …"
	NextRun time.Time `json:"next_run,omitzero"` // zero when paused or never again
	Error   string    `json:"error,omitempty"`   // why the definition is invalid

	// Malformed is set by a driver that could not decode the stored
	// schedule; it says what is wrong. Beat skips such a schedule and
	// reports it; deleting or re-adding it fixes it.
	Malformed string `json:"malformed,omitempty"`
}
