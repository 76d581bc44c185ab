package controlplane

import (
	"testing"
	"time"
)

func TestTimeline(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tl := newTimeline()
	// Samples within a second collapse into one, keeping the first time.
	tl.add(Point{At: t0, Queued: 1})
	tl.add(Point{At: t0.Add(300 * time.Millisecond), Queued: 2})
	if got := tl.since(t0); len(got) != 1 || got[0].Queued != 2 || !got[0].At.Equal(t0) {
		t.Fatalf("collapsed samples: %+v", got)
	}
	// Unchanged values add nothing.
	tl.addIfChanged(Point{At: t0.Add(5 * time.Second), Queued: 2})
	if n := len(tl.since(t0)); n != 1 {
		t.Fatalf("%d samples after an unchanged one, want 1", n)
	}
	// Past capacity the oldest go; order stays oldest first.
	for i := 1; i <= timelineCap+10; i++ {
		tl.add(Point{At: t0.Add(time.Duration(i) * time.Second), Workers: i})
	}
	all := tl.since(time.Time{})
	if len(all) != timelineCap {
		t.Fatalf("%d samples kept, want %d", len(all), timelineCap)
	}
	for i := 1; i < len(all); i++ {
		if !all[i].At.After(all[i-1].At) {
			t.Fatalf("samples out of order at %d", i)
		}
	}
	if last := all[len(all)-1]; last.Workers != timelineCap+10 {
		t.Fatalf("last sample %+v", last)
	}
	// since keeps the level the window opens with.
	from := t0.Add(time.Duration(timelineCap) * time.Second).Add(500 * time.Millisecond)
	got := tl.since(from)
	if len(got) != 11 || got[0].Workers != timelineCap {
		t.Fatalf("since: %d samples, first %+v; want 11 starting with the one before the window", len(got), got[0])
	}
}
