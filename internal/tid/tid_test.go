package tid

import (
	"sort"
	"testing"
	"time"
)

func TestNewIsOrderedAndUnique(t *testing.T) {
	t.Parallel()
	const n = 100_000
	ids := make([]string, n)
	seen := make(map[string]bool, n)
	for i := range ids {
		ids[i] = New()
		if seen[ids[i]] {
			t.Fatalf("duplicate id %s at %d", ids[i], i)
		}
		seen[ids[i]] = true
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids made in sequence do not sort in sequence")
	}
}

func TestTimeRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2031, 5, 6, 7, 8, 9, 123_000_000, time.UTC)
	id := NewAt(at.Add(time.Hour * 24 * 365 * 10)) // later than any previous call
	got, ok := Time(id)
	if !ok {
		t.Fatalf("Time(%q) not ok", id)
	}
	if want := at.Add(time.Hour * 24 * 365 * 10); !got.Equal(want) {
		t.Fatalf("Time = %v, want %v", got, want)
	}
	if _, ok := Time("not-an-id"); ok {
		t.Fatal("Time accepted a malformed id")
	}
}
