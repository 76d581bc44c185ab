package ebbtype

import "testing"

// States and Valid must agree: a state added to one and not the other would
// make drivers call stored tasks of that state malformed.
func TestStatesAreValid(t *testing.T) {
	t.Parallel()
	seen := map[State]bool{}
	for _, s := range States() {
		if !s.Valid() || seen[s] {
			t.Errorf("state %q: valid %v, listed twice %v", s, s.Valid(), seen[s])
		}
		seen[s] = true
	}
	for _, s := range []State{"", "done", "Queued"} {
		if s.Valid() {
			t.Errorf("%q is valid", s)
		}
	}
	if len(seen) != 7 {
		t.Errorf("%d states, want 7", len(seen))
	}
}
