package schedule

import (
	"testing"
	"time"
)

// FuzzParseCron: any expression and zone is refused with an error or gives
// a spec whose next ticks move strictly forward, in its zone, on a whole
// second, however sparse (Feb 30, leap days) or DST-shaped the schedule.
func FuzzParseCron(f *testing.F) {
	for _, seed := range [][2]string{
		{"*/5 * * * *", "UTC"}, {"30 2 * * *", "America/New_York"}, {"0 0 29 2 *", "Europe/Berlin"},
		{"0 0 30 2 *", "UTC"}, {"@hourly", ""}, {"0 9-17/2 * * 1-5", "Asia/Kolkata"}, {"61 * * * *", "UTC"},
		{"0 0 * * 7", "Nope/Zone"}, {"*/0 * * * *", "UTC"}, {"1,2,3 * L * *", "UTC"},
	} {
		f.Add(seed[0], seed[1], int64(1_700_000_000))
	}
	f.Fuzz(func(t *testing.T, expr, tz string, unix int64) {
		spec, err := ParseCron(expr, tz)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseCron(%q, %q): empty error", expr, tz)
			}
			return
		}
		from := time.Unix(unix%(1<<34), 0) // about 1425 to 2514
		prev := from
		for range 3 {
			next := spec.Next(prev)
			if next.IsZero() {
				return // no tick left (a one-off in the past, a date that never comes)
			}
			if !next.After(prev) {
				t.Fatalf("ParseCron(%q, %q).Next(%s) = %s, not after", expr, tz, prev, next)
			}
			if next.Nanosecond() != 0 {
				t.Fatalf("ParseCron(%q, %q).Next(%s) = %s, not on a whole second", expr, tz, prev, next)
			}
			prev = next
		}
	})
}
