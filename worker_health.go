package ebb

import "time"

// WorkerHealth is a running worker's state as liveness and readiness checks
// see it (`ebb worker --health-addr` serves it for Kubernetes probes).
type WorkerHealth struct {
	// Running: Run registered the worker and has not returned.
	Running bool `json:"running"`
	// Draining: the worker stopped fetching; Drained: a requested drain
	// finished and the worker holds nothing (it waits to be stopped).
	Draining bool `json:"draining"`
	Drained  bool `json:"drained"`
	// Busy is the number of tasks running now.
	Busy int `json:"busy"`
	// LastHeartbeat is when the broker last accepted the worker's
	// heartbeat; LastBeatAttempt when the heartbeat loop last tried, with or
	// without success. Both are zero before Run registers.
	LastHeartbeat   time.Time `json:"last_heartbeat,omitzero"`
	LastBeatAttempt time.Time `json:"last_beat_attempt,omitzero"`
	// HeartbeatInterval is the configured interval, for judging the two.
	HeartbeatInterval time.Duration `json:"heartbeat_interval"`
}

// Health reports the worker's state; it is safe to call at any time from
// any goroutine.
func (w *Worker) Health() WorkerHealth {
	h := WorkerHealth{
		Running:           w.running.Load() && !w.stopped.Load() && w.beatTick.Load() != 0,
		Draining:          w.draining.Load(),
		Drained:           w.drained.Load(),
		Busy:              int(w.busy.Load()),
		HeartbeatInterval: w.config.HeartbeatInterval,
	}
	if n := w.beatOK.Load(); n != 0 {
		h.LastHeartbeat = time.Unix(0, n)
	}
	if n := w.beatTick.Load(); n != 0 {
		h.LastBeatAttempt = time.Unix(0, n)
	}
	return h
}
