// Package schedule is beat's clock: when a periodic schedule ticks, which
// tick is due now, and the deterministic task id that makes a tick enqueue
// at most once however many replicas or stale leaders try. It is pure: no
// broker, no wall clock of its own; callers pass every time in.
//
// Every tick falls on a whole second. Task ids name ticks to the second,
// and brokers may store timestamps with less than nanosecond precision, so
// a tick that survived a round trip through storage must still compare equal
// to the one computed afresh.
//
// Cron expressions are evaluated in their time zone with these rules across
// daylight-saving changes (see docs/decisions.md):
//
//   - A schedule whose hour field allows every hour ("*/15 * * * *",
//     "0 * * * *") is a frequency: it fires at each instant whose local clock
//     matches, so it skips the wall times that do not exist when clocks jump
//     forward and fires in both copies of the repeated hour when they fall
//     back, following real elapsed time.
//   - Any other schedule names times of day and fires once per matching local
//     time, at the first instant the local clock reaches it: a time skipped
//     by a jump forward fires right after the jump ("30 2 * * *" at 03:00 on
//     the spring-forward day in Europe/Berlin), and a time repeated by a jump
//     back fires only in its first copy.
package schedule

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// Spec is a parsed schedule: when it ticks.
type Spec interface {
	// Next returns the first tick strictly after t, or the zero time if
	// there is none.
	Next(t time.Time) time.Time
	String() string
}

// Every returns a Spec that ticks at anchor + k·d for every integer k. The
// anchor is truncated to the second and d must be a whole number of seconds,
// so ticks fall on whole seconds.
func Every(d time.Duration, anchor time.Time) (Spec, error) {
	if err := CheckEvery(d); err != nil {
		return nil, fmt.Errorf("every %s: %w", d, err)
	}
	return &everySpec{anchor: anchor.Unix(), period: int64(d / time.Second)}, nil
}

// CheckEvery reports whether d can be an Every interval. Its errors do not
// repeat d, so that callers can say where it came from. A record's zero
// Every means "not an every schedule", so only a caller that knows d was
// given (a command-line flag) can tell 0 apart from unset.
func CheckEvery(d time.Duration) error {
	switch {
	case d < time.Second:
		return errors.New("must be at least 1s")
	case d%time.Second != 0:
		return errors.New("use a whole number of seconds")
	}
	return nil
}

type everySpec struct {
	anchor, period int64 // Unix seconds
}

func (e *everySpec) Next(t time.Time) time.Time {
	// Ticks are whole seconds, so "after t" is "after t's whole second".
	k := floorDiv(t.Unix()-e.anchor, e.period) + 1
	return time.Unix(e.anchor+k*e.period, 0).UTC()
}

func (e *everySpec) String() string {
	return fmt.Sprintf("@every %s from %s", time.Duration(e.period)*time.Second,
		time.Unix(e.anchor, 0).UTC().Format(time.RFC3339))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Once returns a Spec with a single tick at at, rounded up to the next whole
// second if it has a fraction (rounded up so that it never fires early).
func Once(at time.Time) Spec {
	tick := at.Truncate(time.Second)
	if tick.Before(at) {
		tick = tick.Add(time.Second)
	}
	return &onceSpec{at: tick.UTC()}
}

type onceSpec struct{ at time.Time }

func (o *onceSpec) Next(t time.Time) time.Time {
	if t.Before(o.at) {
		return o.at
	}
	return time.Time{}
}

func (o *onceSpec) String() string { return "@at " + o.at.Format(time.RFC3339) }

// CatchUp is what happens to ticks missed while no leader ran.
type CatchUp string

const (
	// CatchUpOnce fires the latest missed tick once, however many were
	// missed. It is the default.
	CatchUpOnce CatchUp = "once"
	// CatchUpSkip fires a tick only while it is at most the grace late.
	CatchUpSkip CatchUp = "skip"
)

// ParseCatchUp checks a stored catch-up policy; "" means CatchUpOnce.
func ParseCatchUp(s string) (CatchUp, error) {
	switch CatchUp(s) {
	case "", CatchUpOnce:
		return CatchUpOnce, nil
	case CatchUpSkip:
		return CatchUpSkip, nil
	}
	return "", fmt.Errorf("catch_up %q: use %q or %q", s, CatchUpOnce, CatchUpSkip)
}

// FromRecord validates a stored schedule and returns when it ticks. Exactly
// one of Cron, Every and At must be set, and TZ applies to Cron only.
//
// Every is anchored at CreatedAt, so a record must be stored with it set;
// a zero CreatedAt is accepted so that definitions can be checked before
// they have one. An At not after CreatedAt is valid but never fires (Due's
// first tick is the first after creation): rejecting it here would turn a
// config file's one-off schedule into an error once its time has passed,
// since its definition is checked again at every start.
func FromRecord(r *ebbtype.Schedule) (Spec, error) {
	if r.Malformed != "" {
		return nil, fmt.Errorf("schedule %q: the stored schedule cannot be read (%s); delete it or add it again", r.Name, r.Malformed)
	}
	spec, err := fromRecord(r)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", r.Name, err)
	}
	return spec, nil
}

func fromRecord(r *ebbtype.Schedule) (Spec, error) {
	var set []string
	if r.Cron != "" {
		set = append(set, "cron")
	}
	if r.Every != 0 {
		set = append(set, "every")
	}
	if !r.At.IsZero() {
		set = append(set, "at")
	}
	switch len(set) {
	case 0:
		return nil, errors.New("set one of cron, every and at")
	case 1:
	default:
		return nil, fmt.Errorf("set only one of cron, every and at (got %s)", strings.Join(set, " and "))
	}
	if _, err := ParseCatchUp(r.CatchUp); err != nil {
		return nil, err
	}
	if r.TZ != "" && r.Cron == "" {
		return nil, fmt.Errorf("tz %q applies to cron only", r.TZ)
	}
	switch {
	case r.Cron != "":
		return ParseCron(r.Cron, r.TZ)
	case r.Every != 0:
		return Every(r.Every, r.CreatedAt)
	default:
		return Once(r.At), nil
	}
}

// TaskID is the id of the task that tick of schedule name enqueues, so that
// a second enqueue of the same tick (after failover, from a stale leader,
// from two replicas) collapses into the first: "beat:<name>:<tick in UTC as
// 20060102T150405Z>". Ticks are named to the second; every Spec here ticks
// on whole seconds, so distinct ticks get distinct ids.
//
// A name that would make the id invalid (over 106 bytes, or characters
// outside [A-Za-z0-9_.:-]) is replaced by its SHA-256 under the prefix
// "beat-h:", which no readable id starts with. The timestamp is fixed-width
// at the end, so readable ids of different names cannot collide either,
// colons in names included.
func TaskID(name string, tick time.Time) string {
	ts := tick.UTC().Format("20060102T150405Z")
	if len(name) <= maxReadableName && validChars(name) {
		return "beat:" + name + ":" + ts
	}
	sum := sha256.Sum256([]byte(name))
	return "beat-h:" + hex.EncodeToString(sum[:]) + ":" + ts
}

// maxReadableName keeps "beat:<name>:<16-byte timestamp>" within ebb's
// 128-byte id limit.
const maxReadableName = 128 - len("beat:") - len(":") - len("20060102T150405Z")

func validChars(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '-' || c == '.' || c == ':':
		default:
			return false
		}
	}
	return true
}
