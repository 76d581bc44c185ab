package ebb_test

import (
	"strings"
	"testing"

	"github.com/ebbq/ebb"
)

func TestValidKind(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"noop", "email.send", "proj.tasks.add", "reports/build:v2", "größe", strings.Repeat("k", 128)} {
		if !ebb.ValidKind(k) {
			t.Errorf("ValidKind(%q) = false, want true", k)
		}
	}
	for _, k := range []string{"", "a\x00b", "tab\there", "new\nline", "two words", "nbsp\u00a0", "\x7f", "bad\xff", strings.Repeat("k", 129)} {
		if ebb.ValidKind(k) {
			t.Errorf("ValidKind(%q) = true, want false", k)
		}
	}
}

func TestHandleRefusesAnInvalidKind(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "not valid") {
			t.Errorf("HandleRaw with a NUL in the kind: recover() = %v, want a panic saying it is not valid", r)
		}
	}()
	ebb.HandleRaw(ebb.NewHandlers(), "a\x00b", nil)
}
