// Package clock is the time source of ebb's machinery. The worker,
// maintenance and the control plane call Now on an ebbtype.Clock instead of
// time.Now, so tests can stop and move time; Wall is the production clock.
package clock

import (
	"context"
	"sync"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// Wall is the real clock.
var Wall ebbtype.Clock = wall{}

type wall struct{}

func (wall) Now() time.Time { return time.Now() }

// Or returns c, or Wall when c is nil.
func Or(c ebbtype.Clock) ebbtype.Clock {
	if c == nil {
		return Wall
	}
	return c
}

// Since is time.Since on c.
func Since(c ebbtype.Clock, t time.Time) time.Duration { return c.Now().Sub(t) }

// Until is time.Until on c.
func Until(c ebbtype.Clock, t time.Time) time.Duration { return t.Sub(c.Now()) }

// Stub is a clock that moves only when told. The zero value starts at the
// zero time; use NewStub.
type Stub struct {
	mu  sync.Mutex
	now time.Time
}

// NewStub returns a stub clock at t.
func NewStub(t time.Time) *Stub { return &Stub{now: t} }

// Now returns the stub's time.
func (s *Stub) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

// Advance moves the stub forward by d and returns the new time.
func (s *Stub) Advance(d time.Duration) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = s.now.Add(d)
	return s.now
}

// Set moves the stub to t.
func (s *Stub) Set(t time.Time) {
	s.mu.Lock()
	s.now = t
	s.mu.Unlock()
}

// Sleep waits for d, or until ctx ends; it reports whether the full d passed.
// Waits are real time on every clock: a stub moves Now, not timers.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
