package schedule

import (
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// A bad zone is the zone's error, not the expression's: "cron …: unknown
// time zone" sent people looking for a typo in the cron fields.
func TestParseCronZoneErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ expr, tz, want string }{
		{"0 9 * * *", "Europe/Berln", `tz "Europe/Berln": unknown time zone: use an IANA name such as Europe/Berlin`},
		{"0 9 * * *", "Mars/Olympus", `tz "Mars/Olympus": unknown time zone: use an IANA name such as Europe/Berlin`},
		{"0 9 * * *", "Local", `tz "Local": depends on each machine's setting: name the zone (e.g. Europe/Berlin)`},
		// Both wrong: the zone is reported, and the expression is not blamed.
		{"61 * * * *", "Mars/Olympus", `tz "Mars/Olympus": unknown time zone`},
	} {
		spec, err := ParseCron(tt.expr, tt.tz)
		if err == nil {
			t.Errorf("ParseCron(%q, %q) = %v, want error %q", tt.expr, tt.tz, spec, tt.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseCron(%q, %q) error %q, want it to start with %q", tt.expr, tt.tz, err, tt.want)
		}
		if strings.Contains(err.Error(), "cron") {
			t.Errorf("ParseCron(%q, %q) error %q blames the cron expression for the zone", tt.expr, tt.tz, err)
		}
	}

	r := &ebbtype.Schedule{Name: "n", Cron: "0 3 * * *", TZ: "Mars/Olympus"}
	const want = `schedule "n": tz "Mars/Olympus": unknown time zone: use an IANA name such as Europe/Berlin or America/New_York`
	if _, err := FromRecord(r); err == nil || err.Error() != want {
		t.Errorf("FromRecord(%+v) error %v, want %q", r, err, want)
	}
}

func TestLoadZone(t *testing.T) {
	t.Parallel()
	for _, tz := range []string{"", "UTC"} {
		if loc, err := LoadZone(tz); err != nil || loc != time.UTC {
			t.Errorf("LoadZone(%q) = %v, %v; want UTC", tz, loc, err)
		}
	}
	if loc, err := LoadZone("Europe/Berlin"); err != nil || loc.String() != "Europe/Berlin" {
		t.Errorf("LoadZone(Europe/Berlin) = %v, %v", loc, err)
	}
	// The errors leave naming the zone to the caller (tz in a config file,
	// --tz on the command line).
	for _, tz := range []string{"Mars/Olympus", "Local"} {
		if _, err := LoadZone(tz); err == nil || strings.Contains(err.Error(), tz) {
			t.Errorf("LoadZone(%q) error %v, want one that does not repeat the name", tz, err)
		}
	}
}

func TestCheckEvery(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                       "must be at least 1s",
		-time.Second:            "must be at least 1s",
		999 * time.Millisecond:  "must be at least 1s",
		1500 * time.Millisecond: "use a whole number of seconds",
		time.Second:             "",
		time.Hour:               "",
	} {
		got := ""
		if err := CheckEvery(d); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("CheckEvery(%s) = %q, want %q", d, got, want)
		}
	}
	// Every words its errors with the interval, as before.
	if _, err := Every(0, time.Time{}); err == nil || err.Error() != "every 0s: must be at least 1s" {
		t.Errorf("Every(0) error %v, want %q", err, "every 0s: must be at least 1s")
	}
}
