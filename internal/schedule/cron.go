package schedule

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// ParseCron parses a cron expression evaluated in time zone tz (an IANA name;
// "" means UTC). It has 5 fields (minute, hour, day of month, month, day of
// week) or 6 with seconds first, or is one of @yearly (@annually),
// @monthly, @weekly, @daily (@midnight) and @hourly.
//
// Fields take *, numbers, ranges (1-5), steps (*/15, 1-30/5, and 5/15
// meaning 5 to the end by 15) and comma lists; months and days of week also
// take English three-letter names (JAN, MON), day of week 7 is Sunday like
// 0, and ? is * in the day fields. As in Vixie cron, when both day fields
// are restricted a day matches either of them; when either starts with * a
// day must match both.
//
// Expressions that can never fire, such as "0 0 30 2 *", are rejected.
func ParseCron(expr, tz string) (Spec, error) {
	// The zone is not part of the expression: blaming a bad zone on the
	// expression sends people looking for a typo in its fields.
	loc, err := LoadZone(tz)
	if err != nil {
		return nil, fmt.Errorf("tz %q: %w", tz, err)
	}
	c, err := parseCron(expr, loc)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", expr, err)
	}
	return c, nil
}

// LoadZone returns the time zone tz names for ParseCron: an IANA name, or
// "" or "UTC" for UTC. Its errors do not repeat tz, so that callers can say
// where it came from (tz in a config file, --tz on the command line).
func LoadZone(tz string) (*time.Location, error) {
	switch tz {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, errors.New("depends on each machine's setting: name the zone (e.g. Europe/Berlin)")
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, errors.New("unknown time zone: use an IANA name such as Europe/Berlin or America/New_York")
	}
	return loc, nil
}

var descriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

type field struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
	starMax  int      // the top of "*" when it differs from max (day of week: 6, not 7)
	question bool     // ? means *
}

var (
	secondField = &field{name: "second", max: 59}
	minuteField = &field{name: "minute", max: 59}
	hourField   = &field{name: "hour", max: 23}
	domField    = &field{name: "day of month", min: 1, max: 31, question: true}
	monthField  = &field{name: "month", min: 1, max: 12,
		names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}}
	dowField = &field{name: "day of week", max: 7, starMax: 6, question: true,
		names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}}
)

const allHours = 1<<24 - 1

type cronSpec struct {
	text string
	loc  *time.Location

	second, minute, hour, dom, month, dow uint64 // bit v set: value v matches
	domStar, dowStar                      bool   // the field starts with * or ?

	// frequency: the hour field allows every hour, so the schedule follows
	// elapsed time across DST changes instead of naming times of day.
	frequency bool
}

func parseCron(expr string, loc *time.Location) (*cronSpec, error) {
	fields := strings.Fields(expr)
	if len(fields) == 0 {
		return nil, errors.New("empty expression")
	}
	text := strings.Join(fields, " ")
	if strings.HasPrefix(strings.ToLower(fields[0]), "@every") {
		return nil, errors.New("@every is not cron: use an every schedule")
	}
	if len(fields) == 1 && strings.HasPrefix(fields[0], "@") {
		d, ok := descriptors[strings.ToLower(fields[0])]
		if !ok {
			return nil, fmt.Errorf("unknown descriptor %s (use @yearly, @monthly, @weekly, @daily or @hourly)", fields[0])
		}
		fields = strings.Fields(d)
	}
	if strings.HasPrefix(fields[0], "TZ=") || strings.HasPrefix(fields[0], "CRON_TZ=") {
		return nil, errors.New("put the time zone in tz, not in the expression")
	}
	switch len(fields) {
	case 5:
		fields = append([]string{"0"}, fields...)
	case 6:
	default:
		return nil, fmt.Errorf("%d fields, want 5 (minute hour day-of-month month day-of-week) or 6 (second first)", len(fields))
	}

	c := &cronSpec{text: text, loc: loc}
	var err error
	for i, p := range []struct {
		f    *field
		mask *uint64
	}{
		{secondField, &c.second}, {minuteField, &c.minute}, {hourField, &c.hour},
		{domField, &c.dom}, {monthField, &c.month}, {dowField, &c.dow},
	} {
		if *p.mask, err = p.f.parse(fields[i]); err != nil {
			return nil, err
		}
	}
	if c.dow&(1<<7) != 0 {
		c.dow = c.dow&^(1<<7) | 1
	}
	c.domStar = fields[3][0] == '*' || fields[3][0] == '?'
	c.dowStar = fields[5][0] == '*' || fields[5][0] == '?'
	c.frequency = c.hour == allHours

	// With both day fields restricted, the day of week alone fires. Otherwise
	// a day must match the day of month, and every (month, day) pair that
	// exists in some year falls on every weekday in some year, so the
	// expression fires iff such a pair exists.
	if c.domStar || c.dowStar {
		possible := false
		for m := 1; m <= 12 && !possible; m++ {
			possible = c.month&(1<<m) != 0 && c.dom&(1<<(daysIn(time.Month(m))+1)-1) != 0
		}
		if !possible {
			return nil, fmt.Errorf("never fires: day of month %q does not occur in month %q", fields[3], fields[4])
		}
	}
	return c, nil
}

// daysIn is the most days month m can have.
func daysIn(m time.Month) int {
	switch m {
	case time.February:
		return 29
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

func (f *field) parse(s string) (uint64, error) {
	var mask uint64
	for item := range strings.SplitSeq(s, ",") {
		if item == "" {
			return 0, fmt.Errorf("%s %q: empty list item", f.name, s)
		}
		rng, stepText, hasStep := strings.Cut(item, "/")
		lo, hi := f.min, f.max
		if rng == "*" || rng == "?" && f.question {
			if f.starMax != 0 {
				hi = f.starMax
			}
		} else {
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = f.value(a, item); err != nil {
				return 0, err
			}
			switch {
			case isRange:
				if hi, err = f.value(b, item); err != nil {
					return 0, err
				}
				if lo > hi {
					return 0, fmt.Errorf("%s range %s is backwards (to wrap around, list two ranges: %s-%d,%d-%s)",
						f.name, rng, a, f.max, f.min, b)
				}
			case !hasStep:
				hi = lo
			}
		}
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || !isDigits(stepText) || n < 1 {
				return 0, fmt.Errorf("%s %q: step %q must be a positive whole number", f.name, item, stepText)
			}
			step = n
		}
		for v := lo; v <= hi; v += step {
			mask |= 1 << v
		}
	}
	return mask, nil
}

func (f *field) value(s, item string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("%s %q: missing value", f.name, item)
	}
	if isDigits(s) {
		n, err := strconv.Atoi(s)
		if err != nil || n < f.min || n > f.max {
			return 0, fmt.Errorf("%s %s out of range %d-%d", f.name, s, f.min, f.max)
		}
		return n, nil
	}
	for i, name := range f.names {
		if strings.EqualFold(s, name) {
			return f.min + i, nil
		}
	}
	if f.names != nil {
		return 0, fmt.Errorf("%s %q is not a number or a name (%s-%s)", f.name, s, f.names[0], f.names[len(f.names)-1])
	}
	return 0, fmt.Errorf("%s %q is not a number", f.name, s)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func (c *cronSpec) String() string { return c.text + " (" + c.loc.String() + ")" }

// searchSpan bounds every search: the Gregorian calendar repeats every 400
// years, so an expression that passed parsing fires within it.
const searchSpan = 400 * 366 * 24 * 3600

// Next works in Unix seconds, on two time lines: instants, and wall-clock
// readings expressed as seconds since 1970-01-01 00:00 local (wall times, as
// if the zone were UTC, where calendar arithmetic has no DST). Between two
// of the zone's transitions the two lines differ by a fixed offset, so Next
// walks the zone's periods, searching each period's range of wall times.
func (c *cronSpec) Next(t time.Time) time.Time {
	now := t.Unix() // ticks are whole seconds: after t is after its second
	limit := now + searchSpan
	// shown is the latest wall time the zone has shown up to the current
	// instant. A time of day fires at the first instant the clock reaches
	// it, so it is due only once the clock shows more than ever before.
	var shown int64
	if !c.frequency {
		shown = maxWallThrough(now, c.loc)
	}
	for i := now + 1; i < limit; {
		at := time.Unix(i, 0).In(c.loc)
		_, off := at.Zone()
		offset := int64(off)
		end := limit
		if _, e := at.ZoneBounds(); !e.IsZero() && e.Unix() < limit {
			end = e.Unix()
		}
		from := i + offset
		if !c.frequency {
			// Wall times the clock jumped over fire at the jump.
			if shown+1 < from {
				if _, ok := c.nextWall(shown+1, from); ok {
					return at
				}
			}
			from = max(from, shown+1)
			shown = max(shown, end+offset-1)
		}
		if w, ok := c.nextWall(from, end+offset); ok {
			return time.Unix(w-offset, 0).In(c.loc)
		}
		i = end
	}
	return time.Time{}
}

// maxWallThrough returns the latest wall time loc showed at or before
// instant now. It exceeds now's own wall time just after the clocks went
// back, while the zone shows an hour again.
func maxWallThrough(now int64, loc *time.Location) int64 {
	at := time.Unix(now, 0).In(loc)
	_, off := at.Zone()
	shown := now + int64(off)
	// No zone has ever turned its clocks back by more than a day.
	for range 8 {
		start, _ := at.ZoneBounds()
		if start.IsZero() || now-start.Unix() > 2*24*3600 {
			break
		}
		at = time.Unix(start.Unix()-1, 0).In(loc)
		_, off = at.Zone()
		shown = max(shown, at.Unix()+int64(off))
	}
	return shown
}

// nextWall returns the first wall time in [from, limit) that the fields
// match.
func (c *cronSpec) nextWall(from, limit int64) (int64, bool) {
	w := from
	for w < limit {
		t := time.Unix(w, 0).UTC()
		y, mo, d := t.Date()
		h, mi, s := t.Clock()
		switch {
		case c.month&(1<<mo) == 0:
			w = wall(y, mo+1, 1, 0, 0, 0)
		case !c.dayMatches(d, t.Weekday()):
			w = wall(y, mo, d+1, 0, 0, 0)
		case c.hour&(1<<h) == 0:
			if n, ok := nextBit(c.hour, h); ok {
				w = wall(y, mo, d, n, 0, 0)
			} else {
				w = wall(y, mo, d+1, 0, 0, 0)
			}
		case c.minute&(1<<mi) == 0:
			if n, ok := nextBit(c.minute, mi); ok {
				w = wall(y, mo, d, h, n, 0)
			} else {
				w = wall(y, mo, d, h+1, 0, 0)
			}
		case c.second&(1<<s) == 0:
			if n, ok := nextBit(c.second, s); ok {
				w += int64(n - s)
			} else {
				w = wall(y, mo, d, h, mi+1, 0)
			}
		default:
			return w, true
		}
	}
	return 0, false
}

func (c *cronSpec) dayMatches(d int, wd time.Weekday) bool {
	domOK := c.dom&(1<<d) != 0
	dowOK := c.dow&(1<<wd) != 0
	if c.domStar || c.dowStar {
		return domOK && dowOK
	}
	return domOK || dowOK
}

// nextBit returns the lowest set bit of mask above v.
func nextBit(mask uint64, v int) (int, bool) {
	rest := mask >> (v + 1)
	if rest == 0 {
		return 0, false
	}
	return v + 1 + bits.TrailingZeros64(rest), true
}

func wall(y int, mo time.Month, d, h, mi, s int) int64 {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC).Unix()
}
