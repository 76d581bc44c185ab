package schedule

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones below, also on machines without /usr/share/zoneinfo

	"github.com/ebbq/ebb/ebbtype"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// ticks returns the first n ticks of spec after from.
func ticks(spec Spec, from time.Time, n int) []time.Time {
	var out []time.Time
	for t := from; len(out) < n; {
		t = spec.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

func formatAll(ts []time.Time) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.UTC().Format(time.RFC3339)
	}
	return strings.Join(s, " ")
}

func TestParseCronValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr, tz string
		from     string
		want     string // the next ticks, UTC
	}{
		{"* * * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z 2026-01-01T00:02:00Z"},
		{"*/15 * * * *", "", "2026-01-01T00:07:00Z", "2026-01-01T00:15:00Z 2026-01-01T00:30:00Z 2026-01-01T00:45:00Z 2026-01-01T01:00:00Z"},
		{"  0   12 * * * ", "", "2026-01-01T12:00:00Z", "2026-01-02T12:00:00Z"},
		{"5,10-12 3 * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T03:05:00Z 2026-01-01T03:10:00Z 2026-01-01T03:11:00Z 2026-01-01T03:12:00Z 2026-01-02T03:05:00Z"},
		{"0-30/10 0 * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T00:10:00Z 2026-01-01T00:20:00Z 2026-01-01T00:30:00Z 2026-01-02T00:00:00Z"},
		{"50/5 0 * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T00:50:00Z 2026-01-01T00:55:00Z 2026-01-02T00:50:00Z"},
		{"*/60 * * * *", "", "2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z"},
		// Seconds first.
		{"*/20 * * * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T00:00:20Z 2026-01-01T00:00:40Z 2026-01-01T00:01:00Z"},
		{"30 0 12 * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T12:00:30Z 2026-01-02T12:00:30Z"},
		{"* * * * * *", "", "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:01Z 2026-01-01T00:00:02Z"},
		// Names, day 7, ?.
		{"0 0 1 jan,Jul *", "", "2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z 2027-01-01T00:00:00Z"},
		{"0 9 * * MON-FRI", "", "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z 2026-01-06T09:00:00Z"}, // 2 Jan 2026 is a Friday
		{"0 0 * * 7", "", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z 2026-01-11T00:00:00Z"},
		{"0 0 * * 5-7", "", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z 2026-01-03T00:00:00Z 2026-01-04T00:00:00Z 2026-01-09T00:00:00Z"},
		{"0 0 ? * sun", "", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
		{"0 0 */2 * *", "", "2026-01-30T00:00:00Z", "2026-01-31T00:00:00Z 2026-02-01T00:00:00Z 2026-02-03T00:00:00Z"},
		// Both day fields restricted: either matches (the 13th, and Fridays).
		{"0 0 13 * 5", "", "2026-02-01T00:00:00Z", "2026-02-06T00:00:00Z 2026-02-13T00:00:00Z 2026-02-20T00:00:00Z 2026-02-27T00:00:00Z 2026-03-06T00:00:00Z"},
		// One starts with *: both must match (odd days that are Mondays).
		{"0 0 */2 * 1", "", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z 2026-01-19T00:00:00Z 2026-02-09T00:00:00Z"},
		// Rare but possible.
		{"0 0 29 2 *", "", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z 2032-02-29T00:00:00Z"},
		{"0 0 29 2 0", "", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"},   // OR: Sundays of February
		{"0 0 29 2 */7", "", "2026-01-01T00:00:00Z", "2032-02-29T00:00:00Z"}, // AND: 29 February on a Sunday
		{"0 0 31 * *", "", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z 2026-05-31T00:00:00Z"},
		// Descriptors.
		{"@yearly", "", "2026-05-05T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"@annually", "", "2026-05-05T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"@monthly", "", "2026-05-05T00:00:00Z", "2026-06-01T00:00:00Z"},
		{"@weekly", "", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
		{"@daily", "", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
		{"@midnight", "", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
		{"@HOURLY", "", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"},
		// Time zones.
		{"0 9 * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T09:00:00Z"},
		{"0 9 * * *", "Europe/Berlin", "2026-01-01T00:00:00Z", "2026-01-01T08:00:00Z 2026-01-02T08:00:00Z"},
		{"0 9 * * *", "Europe/Berlin", "2026-07-01T00:00:00Z", "2026-07-01T07:00:00Z"},
		{"0 9 * * *", "America/New_York", "2026-01-01T00:00:00Z", "2026-01-01T14:00:00Z"},
		{"0 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01T03:30:00Z"},
		{"0 0 1 * *", "Pacific/Auckland", "2026-01-01T00:00:00Z", "2026-01-31T11:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.expr+"/"+tt.tz, func(t *testing.T) {
			t.Parallel()
			checkTicks(t, tt.expr, tt.tz, tt.from, tt.want)
		})
	}
}

func TestParseCronErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ expr, tz, want string }{
		{"61 * * * *", "", `cron "61 * * * *": minute 61 out of range 0-59`},
		{"* 24 * * *", "", `hour 24 out of range 0-23`},
		{"* * 0 * *", "", `day of month 0 out of range 1-31`},
		{"* * 32 * *", "", `day of month 32 out of range 1-31`},
		{"* * * 13 *", "", `month 13 out of range 1-12`},
		{"* * * * 8", "", `day of week 8 out of range 0-7`},
		{"60 * * * * *", "", `second 60 out of range 0-59`},
		{"99999999999999999999 * * * *", "", `minute 99999999999999999999 out of range 0-59`},
		{"", "", `cron "": empty expression`},
		{"* * * *", "", `4 fields, want 5 (minute hour day-of-month month day-of-week) or 6 (second first)`},
		{"* * * * * * *", "", `7 fields, want 5`},
		{"a * * * *", "", `minute "a" is not a number`},
		{"+5 * * * *", "", `minute "+5" is not a number`},
		{"* * * FOO *", "", `month "FOO" is not a number or a name (JAN-DEC)`},
		{"* * * * MONDAY", "", `day of week "MONDAY" is not a number or a name (SUN-SAT)`},
		{"* * * JAN-xyz *", "", `month "xyz" is not a number or a name (JAN-DEC)`},
		{"? * * * *", "", `minute "?" is not a number`},
		{"5-1 * * * *", "", `minute range 5-1 is backwards (to wrap around, list two ranges: 5-59,0-1)`},
		{"* 22-2 * * *", "", `hour range 22-2 is backwards (to wrap around, list two ranges: 22-23,0-2)`},
		{"*/0 * * * *", "", `minute "*/0": step "0" must be a positive whole number`},
		{"*/x * * * *", "", `minute "*/x": step "x" must be a positive whole number`},
		{"*/ * * * *", "", `minute "*/": step "" must be a positive whole number`},
		{"1,,2 * * * *", "", `minute "1,,2": empty list item`},
		{"1, * * * *", "", `minute "1,": empty list item`},
		{"-1 * * * *", "", `minute "-1": missing value`},
		{"1- * * * *", "", `minute "1-": missing value`},
		{"@reboot", "", `unknown descriptor @reboot (use @yearly, @monthly, @weekly, @daily or @hourly)`},
		{"@every 5m", "", `@every is not cron: use an every schedule`},
		{"CRON_TZ=Europe/Berlin 0 9 * * *", "", `put the time zone in tz, not in the expression`},
		{"0 0 30 2 *", "", `cron "0 0 30 2 *": never fires: day of month "30" does not occur in month "2"`},
		{"0 0 31 4,6,9,11 *", "", `never fires: day of month "31" does not occur in month "4,6,9,11"`},
		{"0 0 30,31 FEB ?", "", `never fires: day of month "30,31" does not occur in month "FEB"`},
	}
	for _, tt := range tests {
		t.Run(tt.expr+"/"+tt.tz, func(t *testing.T) {
			t.Parallel()
			spec, err := ParseCron(tt.expr, tt.tz)
			if err == nil {
				t.Fatalf("parsed as %v, want error %q", spec, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), `cron "`) {
				t.Errorf("error %q does not name the expression", err)
			}
		})
	}
}

func TestCronString(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ expr, tz, want string }{
		{"0  9 * * *", "", "0 9 * * * (UTC)"},
		{"@daily", "Europe/Berlin", "@daily (Europe/Berlin)"},
	} {
		spec, err := ParseCron(tt.expr, tt.tz)
		if err != nil {
			t.Fatal(err)
		}
		if got := spec.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// In Europe/Berlin, 2026-03-29 02:00 CET becomes 03:00 CEST (01:00 UTC) and
// 2026-10-25 03:00 CEST becomes 02:00 CET (01:00 UTC).
func TestCronDST(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, expr, tz, from string
		want                 string
	}{
		{"skipped time fires right after the jump", "30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z",
			"2026-03-29T01:00:00Z 2026-03-30T00:30:00Z"},
		{"skipped full hour fires right after the jump", "0 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z",
			"2026-03-29T01:00:00Z 2026-03-30T00:00:00Z"},
		{"a skipped hour's minutes fire once", "*/20 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z",
			"2026-03-29T01:00:00Z 2026-03-30T00:00:00Z 2026-03-30T00:20:00Z"},
		{"fixed hours around the gap", "0 1-3 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z",
			"2026-03-29T00:00:00Z 2026-03-29T01:00:00Z 2026-03-29T23:00:00Z"},
		{"repeated time fires in its first copy only", "30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z",
			"2026-10-25T00:30:00Z 2026-10-26T01:30:00Z"},
		{"repeated full hour fires once", "0 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z",
			"2026-10-25T00:00:00Z 2026-10-26T01:00:00Z"},
		{"a repeated hour's minutes fire once", "*/20 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z",
			"2026-10-25T00:00:00Z 2026-10-25T00:20:00Z 2026-10-25T00:40:00Z 2026-10-26T01:00:00Z"},
		{"from inside the second copy", "30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z",
			"2026-10-26T01:30:00Z"},
		{"from inside the second copy, before its time", "45 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z",
			"2026-10-26T01:45:00Z"},
		{"after the repeated hour", "0 3 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z",
			"2026-10-25T02:00:00Z 2026-10-26T02:00:00Z"},
		{"every hour skips the missing hour", "0 * * * *", "Europe/Berlin", "2026-03-28T23:30:00Z",
			"2026-03-29T00:00:00Z 2026-03-29T01:00:00Z 2026-03-29T02:00:00Z"},
		{"every hour runs in both copies", "0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z",
			"2026-10-25T00:00:00Z 2026-10-25T01:00:00Z 2026-10-25T02:00:00Z"},
		{"hourly at :05 stays an hour apart", "5 * * * *", "Europe/Berlin", "2026-03-28T23:30:00Z",
			"2026-03-29T00:05:00Z 2026-03-29T01:05:00Z 2026-03-29T02:05:00Z"},
		{"@hourly runs in both copies", "@hourly", "Europe/Berlin", "2026-10-24T23:30:00Z",
			"2026-10-25T00:00:00Z 2026-10-25T01:00:00Z 2026-10-25T02:00:00Z"},
		{"daily at 09:00 on spring-forward day", "0 9 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z",
			"2026-03-28T08:00:00Z 2026-03-29T07:00:00Z 2026-03-30T07:00:00Z"},
		{"daily at 09:00 on fall-back day", "0 9 * * *", "Europe/Berlin", "2026-10-24T00:00:00Z",
			"2026-10-24T07:00:00Z 2026-10-25T08:00:00Z 2026-10-26T08:00:00Z"},
		{"daily at midnight on both days", "0 0 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z",
			"2026-03-28T23:00:00Z 2026-03-29T22:00:00Z"},
		{"seconds in the gap", "30 30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z",
			"2026-03-29T01:00:00Z 2026-03-30T00:30:30Z"},
		{"New York gap", "30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z",
			"2026-03-08T07:00:00Z 2026-03-09T06:30:00Z"},
		{"New York repeat", "30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z",
			"2026-11-01T05:30:00Z 2026-11-02T06:30:00Z"},
		// Santiago turns midnight into 01:00 on 2026-09-06.
		{"midnight that does not exist", "0 0 * * *", "America/Santiago", "2026-09-05T12:00:00Z",
			"2026-09-06T04:00:00Z 2026-09-07T03:00:00Z"},
		// Samoa skipped 30 December 2011 entirely.
		{"a day that does not exist", "0 9 30 12 *", "Pacific/Apia", "2011-12-29T00:00:00Z",
			"2011-12-30T10:00:00Z 2012-12-29T19:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkTicks(t, tt.expr, tt.tz, tt.from, tt.want)
		})
	}
}

// Across both of Berlin's 2026 transitions, "*/15 * * * *" ticks every 15
// minutes of real time.
func TestCronDSTElapsed(t *testing.T) {
	t.Parallel()
	spec, err := ParseCron("*/15 * * * *", "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"2026-03-28T22:00:00Z", "2026-10-24T22:00:00Z"} {
		prev := utc(from)
		for _, tick := range ticks(spec, prev, 24) {
			if d := tick.Sub(prev); d != 15*time.Minute {
				t.Errorf("after %s: tick %s comes %s later, want 15m", prev.UTC(), tick.UTC(), d)
			}
			prev = tick
		}
	}
}

// TestCronDSTReference checks Next against the rules applied by brute force,
// minute by minute, around every transition of some awkward zones: a
// frequency fires at each instant whose wall clock matches; other schedules
// fire at an instant when the clock shows, for the first time, a matching
// wall time (reaching it, or jumping over it).
func TestCronDSTReference(t *testing.T) {
	t.Parallel()
	zones := []struct {
		name string
		year int
	}{
		{"Europe/Berlin", 2026}, {"America/New_York", 2026}, {"America/Santiago", 2026},
		{"Australia/Lord_Howe", 2026}, {"Pacific/Apia", 2011}, {"Asia/Kolkata", 2026},
	}
	exprs := []string{
		"30 2 * * *", "0 0 * * *", "30 23 * * *", "*/15 * * * *", "0 * * * *", "45 * * * *",
		"*/20 2 * * *", "0 */2 * * *", "45 1,2,3 * * *", "* 2 * * *", "15,45 0-3 * * *", "0 9 30 12 *",
	}
	for _, z := range zones {
		loc := mustLoad(t, z.name)
		// The zone's transitions that year, plus one ordinary day.
		around := []time.Time{time.Date(z.year, 6, 1, 12, 0, 0, 0, time.UTC)}
		for at := time.Date(z.year, 1, 1, 0, 0, 0, 0, loc); at.Year() == z.year; {
			_, end := at.ZoneBounds()
			if end.IsZero() {
				break
			}
			around = append(around, end)
			at = end.In(loc)
		}
		for _, expr := range exprs {
			spec, err := ParseCron(expr, z.name)
			if err != nil {
				t.Fatal(err)
			}
			c := spec.(*cronSpec)
			for _, center := range around {
				start := center.Add(-30 * time.Hour).Truncate(time.Minute)
				stop := center.Add(30 * time.Hour)
				want := referenceTicks(c, start, stop)
				var got []time.Time
				for tick := spec.Next(start); tick.Before(stop); tick = spec.Next(tick) {
					got = append(got, tick)
				}
				if len(want) == 0 && expr != "0 9 30 12 *" {
					t.Errorf("%q in %s around %s: no ticks", expr, z.name, center.UTC())
				}
				if formatAll(got) != formatAll(want) {
					t.Errorf("%q in %s around %s:\n got %s\nwant %s", expr, z.name, center.UTC(), formatAll(got), formatAll(want))
					continue
				}
				// From instants between ticks too, such as the second copy of
				// a repeated hour.
				k := 0
				for at := start.Add(17 * time.Second); len(want) > 0 && at.Before(want[len(want)-1]); at = at.Add(7 * time.Minute) {
					for !want[k].After(at) {
						k++
					}
					if next := spec.Next(at); !next.Equal(want[k]) {
						t.Errorf("%q in %s: Next(%s) = %s, want %s", expr, z.name, at.UTC(), next.UTC(), want[k].UTC())
						break
					}
				}
			}
		}
	}
}

// referenceTicks assumes minute-aligned expressions and zone offsets.
func referenceTicks(c *cronSpec, start, stop time.Time) []time.Time {
	matches := func(wall int64) bool { _, ok := c.nextWall(wall, wall+1); return ok }
	wallOf := func(at time.Time) int64 {
		_, off := at.In(c.loc).Zone()
		return at.Unix() + int64(off)
	}
	var out []time.Time
	shown := wallOf(start)
	for at := start.Add(time.Minute); at.Before(stop); at = at.Add(time.Minute) {
		w := wallOf(at)
		fire := false
		if c.frequency {
			fire = matches(w)
		} else {
			for v := shown + 60; v <= w; v += 60 {
				fire = fire || matches(v)
			}
		}
		shown = max(shown, w)
		if fire {
			out = append(out, at)
		}
	}
	return out
}

func TestNextAlwaysAfter(t *testing.T) {
	t.Parallel()
	exprs := []string{"* * * * * *", "*/7 * * * *", "30 2 * * *", "0 0 29 2 *", "0 0 29 2 */7", "@hourly", "0 1-3 * * 0"}
	zones := []string{"", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"}
	r := rand.New(rand.NewPCG(1, 2))
	base := utc("2026-01-01T00:00:00Z")
	for _, z := range zones {
		for _, expr := range exprs {
			spec, err := ParseCron(expr, z)
			if err != nil {
				t.Fatal(err)
			}
			for range 300 {
				at := base.Add(time.Duration(r.Int64N(int64(3 * 365 * 24 * time.Hour))))
				next := spec.Next(at)
				if !next.After(at) {
					t.Fatalf("%q in %q: Next(%s) = %s", expr, z, at, next)
				}
				if next.Nanosecond() != 0 {
					t.Fatalf("%q in %q: Next(%s) = %s, not a whole second", expr, z, at, next)
				}
			}
		}
	}
}

func TestEvery(t *testing.T) {
	t.Parallel()
	anchor := utc("2026-01-01T12:00:07.25Z") // ticks on its whole second
	spec, err := Every(5*time.Minute, anchor)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ at, want string }{
		{"2026-01-01T12:00:07.25Z", "2026-01-01T12:05:07Z"},
		{"2026-01-01T12:00:07Z", "2026-01-01T12:05:07Z"},
		{"2026-01-01T12:00:06.9Z", "2026-01-01T12:00:07Z"},
		{"2026-01-01T12:05:06Z", "2026-01-01T12:05:07Z"},
		{"2026-01-01T12:05:07Z", "2026-01-01T12:10:07Z"},
		{"2026-01-01T12:05:07.999Z", "2026-01-01T12:10:07Z"},
		{"2026-03-29T01:03:00Z", "2026-03-29T01:05:07Z"}, // no DST: every is real elapsed time
		{"2025-12-31T23:59:00Z", "2026-01-01T00:00:07Z"}, // before the anchor, same phase
	}
	for _, tt := range tests {
		if got := spec.Next(utc(tt.at)); !got.Equal(utc(tt.want)) {
			t.Errorf("Next(%s) = %s, want %s", tt.at, got.UTC().Format(time.RFC3339Nano), tt.want)
		}
	}
	if got, want := spec.String(), "@every 5m0s from 2026-01-01T12:00:07Z"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}

	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "every 0s: must be at least 1s"},
		{-time.Minute, "every -1m0s: must be at least 1s"},
		{500 * time.Millisecond, "every 500ms: must be at least 1s"},
		{1500 * time.Millisecond, "every 1.5s: use a whole number of seconds"},
	} {
		if _, err := Every(tt.d, anchor); err == nil || err.Error() != tt.want {
			t.Errorf("Every(%s) error %v, want %q", tt.d, err, tt.want)
		}
	}
}

func TestOnce(t *testing.T) {
	t.Parallel()
	spec := Once(utc("2026-05-01T10:00:00Z"))
	for _, tt := range []struct{ at, want string }{
		{"2026-04-01T00:00:00Z", "2026-05-01T10:00:00Z"},
		{"2026-05-01T09:59:59.999Z", "2026-05-01T10:00:00Z"},
		{"2026-05-01T10:00:00Z", ""},
		{"2026-06-01T00:00:00Z", ""},
	} {
		got := spec.Next(utc(tt.at))
		if (tt.want == "" && !got.IsZero()) || (tt.want != "" && !got.Equal(utc(tt.want))) {
			t.Errorf("Next(%s) = %s, want %q", tt.at, got, tt.want)
		}
	}
	if got := Once(utc("2026-05-01T10:00:00.2Z")).Next(time.Time{}); !got.Equal(utc("2026-05-01T10:00:01Z")) {
		t.Errorf("a fractional at ticks at %s, want the next whole second", got)
	}
	if got, want := spec.String(), "@at 2026-05-01T10:00:00Z"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestFromRecord(t *testing.T) {
	t.Parallel()
	created := utc("2026-01-01T12:00:00Z")
	valid := []struct {
		name string
		r    ebbtype.Schedule
		from string
		want string
	}{
		{"cron", ebbtype.Schedule{Cron: "0 9 * * *", TZ: "Europe/Berlin"}, "2026-01-01T00:00:00Z", "2026-01-01T08:00:00Z"},
		{"every anchored at created", ebbtype.Schedule{Every: time.Hour, CreatedAt: created, CatchUp: "skip"}, "2026-01-01T12:00:00Z", "2026-01-01T13:00:00Z"},
		{"at", ebbtype.Schedule{At: utc("2026-02-01T00:00:00Z"), CreatedAt: created, CatchUp: "once"}, "2026-01-01T12:00:00Z", "2026-02-01T00:00:00Z"},
		{"every before it is stored", ebbtype.Schedule{Every: time.Hour}, "2026-01-01T12:30:00Z", "2026-01-01T13:00:00Z"},
		{"at in the past", ebbtype.Schedule{At: utc("2025-02-01T00:00:00Z"), CreatedAt: created}, "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"},
	}
	for _, tt := range valid {
		r := tt.r
		r.Name = "n"
		spec, err := FromRecord(&r)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := spec.Next(utc(tt.from)); !got.Equal(utc(tt.want)) {
			t.Errorf("%s: Next(%s) = %s, want %s", tt.name, tt.from, got.UTC(), tt.want)
		}
	}

	invalid := []struct {
		r    ebbtype.Schedule
		want string
	}{
		{ebbtype.Schedule{}, `schedule "n": set one of cron, every and at`},
		{ebbtype.Schedule{Cron: "@daily", Every: time.Hour, CreatedAt: created}, `schedule "n": set only one of cron, every and at (got cron and every)`},
		{ebbtype.Schedule{Cron: "@daily", Every: time.Hour, At: created}, `(got cron and every and at)`},
		{ebbtype.Schedule{Cron: "@daily", CatchUp: "all"}, `schedule "n": catch_up "all": use "once" or "skip"`},
		{ebbtype.Schedule{Cron: "61 * * * *"}, `schedule "n": cron "61 * * * *": minute 61 out of range 0-59`},
		{ebbtype.Schedule{Cron: "@daily", TZ: "Mars/Olympus"}, `schedule "n": tz "Mars/Olympus": unknown time zone: use an IANA name`},
		{ebbtype.Schedule{Every: time.Hour, TZ: "Europe/Berlin", CreatedAt: created}, `schedule "n": tz "Europe/Berlin" applies to cron only`},
		{ebbtype.Schedule{Every: time.Millisecond, CreatedAt: created}, `schedule "n": every 1ms: must be at least 1s`},
	}
	for _, tt := range invalid {
		r := tt.r
		r.Name = "n"
		_, err := FromRecord(&r)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("FromRecord(%+v) error %v, want %q", tt.r, err, tt.want)
		}
	}
}

func TestParseCatchUp(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]CatchUp{"": CatchUpOnce, "once": CatchUpOnce, "skip": CatchUpSkip} {
		if got, err := ParseCatchUp(in); err != nil || got != want {
			t.Errorf("ParseCatchUp(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseCatchUp("Once"); err == nil {
		t.Error(`ParseCatchUp("Once") succeeded`)
	}
}

func TestDue(t *testing.T) {
	t.Parallel()
	created := utc("2026-01-01T12:00:00Z")
	minutely, err := Every(time.Minute, created)
	if err != nil {
		t.Fatal(err)
	}
	perSecond, err := Every(time.Second, created)
	if err != nil {
		t.Fatal(err)
	}
	nightly, err := ParseCron("30 2 * * *", "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	once := Once(utc("2026-01-01T12:30:00Z"))
	const grace = 5 * time.Second

	tests := []struct {
		name       string
		spec       Spec
		last, now  string
		policy     CatchUp
		tick, next string // tick "": nothing fires; next "": never again
	}{
		{"before the first tick", minutely, "", "2026-01-01T12:00:30Z", CatchUpOnce, "", "2026-01-01T12:01:00Z"},
		{"first tick after created", minutely, "", "2026-01-01T12:01:00.2Z", CatchUpOnce, "2026-01-01T12:01:00Z", "2026-01-01T12:02:00Z"},
		{"created on a tick does not fire it", minutely, "", "2026-01-01T12:00:00Z", CatchUpOnce, "", "2026-01-01T12:01:00Z"},
		{"normal tick", minutely, "2026-01-01T12:01:00Z", "2026-01-01T12:02:00.3Z", CatchUpOnce, "2026-01-01T12:02:00Z", "2026-01-01T12:03:00Z"},
		{"tick exactly at now", minutely, "2026-01-01T12:01:00Z", "2026-01-01T12:02:00Z", CatchUpOnce, "2026-01-01T12:02:00Z", "2026-01-01T12:03:00Z"},
		{"tick exactly at now, skip", minutely, "2026-01-01T12:01:00Z", "2026-01-01T12:02:00Z", CatchUpSkip, "2026-01-01T12:02:00Z", "2026-01-01T12:03:00Z"},
		{"already fired", minutely, "2026-01-01T12:02:00Z", "2026-01-01T12:02:00.5Z", CatchUpOnce, "", "2026-01-01T12:03:00Z"},
		{"many missed, once: the latest only", minutely, "2026-01-01T12:01:00Z", "2026-01-01T13:30:30Z", CatchUpOnce, "2026-01-01T13:30:00Z", "2026-01-01T13:31:00Z"},
		{"many missed, skip, latest within grace", minutely, "2026-01-01T12:01:00Z", "2026-01-01T13:30:04Z", CatchUpSkip, "2026-01-01T13:30:00Z", "2026-01-01T13:31:00Z"},
		{"many missed, skip, latest exactly grace old", minutely, "2026-01-01T12:01:00Z", "2026-01-01T13:30:05Z", CatchUpSkip, "2026-01-01T13:30:00Z", "2026-01-01T13:31:00Z"},
		{"many missed, skip, latest just past grace", minutely, "2026-01-01T12:01:00Z", "2026-01-01T13:30:05.000000001Z", CatchUpSkip, "", "2026-01-01T13:31:00Z"},
		{"one late tick, once", minutely, "2026-01-01T12:01:00Z", "2026-01-01T12:02:40Z", CatchUpOnce, "2026-01-01T12:02:00Z", "2026-01-01T12:03:00Z"},
		{"one late tick, skip", minutely, "2026-01-01T12:01:00Z", "2026-01-01T12:02:40Z", CatchUpSkip, "", "2026-01-01T12:03:00Z"},
		{"empty policy is once", minutely, "2026-01-01T12:01:00Z", "2026-01-01T13:30:30Z", "", "2026-01-01T13:30:00Z", "2026-01-01T13:31:00Z"},
		{"a year missed, per second", perSecond, "2026-01-01T12:00:01Z", "2027-01-01T00:00:00.5Z", CatchUpOnce, "2027-01-01T00:00:00Z", "2027-01-01T00:00:01Z"},
		{"last after now (fast clock elsewhere)", minutely, "2026-01-01T12:05:00Z", "2026-01-01T12:03:10Z", CatchUpOnce, "", "2026-01-01T12:06:00Z"},
		{"cron nights missed", nightly, "2026-03-20T01:30:00Z", "2026-03-29T09:00:00Z", CatchUpOnce, "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"},
		{"once, not yet", once, "", "2026-01-01T12:29:59Z", CatchUpOnce, "", "2026-01-01T12:30:00Z"},
		{"once, due", once, "", "2026-01-01T12:30:01Z", CatchUpOnce, "2026-01-01T12:30:00Z", ""},
		{"once, fired", once, "2026-01-01T12:30:00Z", "2026-01-01T12:31:00Z", CatchUpOnce, "", ""},
		{"once, missed, skip", once, "", "2026-01-01T13:00:00Z", CatchUpSkip, "", ""},
	}
	parse := func(s string) time.Time {
		if s == "" {
			return time.Time{}
		}
		return utc(s)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tick, ok, next := Due(tt.spec, created, parse(tt.last), utc(tt.now), tt.policy, grace)
			if ok != (tt.tick != "") || !tick.Equal(parse(tt.tick)) {
				t.Errorf("tick %s (ok %v), want %q", tick.UTC(), ok, tt.tick)
			}
			if !next.Equal(parse(tt.next)) {
				t.Errorf("next %s, want %q", next.UTC(), tt.next)
			}
		})
	}
}

var validID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

func TestTaskID(t *testing.T) {
	t.Parallel()
	tick := utc("2026-03-29T01:00:00Z")
	ber := mustLoad(t, "Europe/Berlin")

	if got, want := TaskID("nightly-report", tick), "beat:nightly-report:20260329T010000Z"; got != want {
		t.Errorf("TaskID = %q, want %q", got, want)
	}
	if a, b := TaskID("n", tick), TaskID("n", tick.In(ber)); a != b {
		t.Errorf("same tick in another zone: %q != %q", a, b)
	}
	if a, b := TaskID("n", tick), TaskID("n", tick.Add(time.Second)); a == b {
		t.Errorf("ticks a second apart share id %q", a)
	}
	if a, b := TaskID("n", tick), TaskID("m", tick); a == b {
		t.Errorf("two schedules share id %q", a)
	}
	// The timestamp is fixed-width, so colons in names cannot make two
	// (name, tick) pairs collide.
	if a, b := TaskID("a:20260329T010000Z", tick), TaskID("a", tick); a == b {
		t.Errorf("collision: %q", a)
	}

	long := strings.Repeat("x", 200)
	names := []string{"n", "with.dots_and-dashes:colons", strings.Repeat("y", maxReadableName), long, "has space", "ünïcode", ""}
	for _, name := range names {
		id := TaskID(name, tick)
		if !validID.MatchString(id) {
			t.Errorf("TaskID(%q) = %q is not a valid id", name, id)
		}
		if id != TaskID(name, tick) {
			t.Errorf("TaskID(%q) is not deterministic", name)
		}
	}
	if id := TaskID(strings.Repeat("y", maxReadableName), tick); len(id) != 128 || !strings.HasPrefix(id, "beat:y") {
		t.Errorf("longest readable id %q (%d bytes)", id, len(id))
	}
	if a, b := TaskID(long, tick), TaskID(long+"z", tick); a == b || !strings.HasPrefix(a, "beat-h:") {
		t.Errorf("long names: %q, %q", a, b)
	}
}

// checkTicks parses expr in tz and checks its ticks after from against want
// (space-separated RFC 3339 times).
func checkTicks(t *testing.T, expr, tz, from, want string) {
	t.Helper()
	spec, err := ParseCron(expr, tz)
	if err != nil {
		t.Fatal(err)
	}
	if got := formatAll(ticks(spec, utc(from), len(strings.Fields(want)))); got != want {
		t.Errorf("%q in %s after %s:\n got %s\nwant %s", expr, tz, from, got, want)
	}
}
