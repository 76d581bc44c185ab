package ebbsqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbdrivertest"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
)

// newDriver opens a fresh database file for one test.
func newDriver(t testing.TB) *ebbsqlite.Driver {
	t.Helper()
	d, err := ebbsqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ebb.db"), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func TestConformance(t *testing.T) {
	t.Parallel()
	ebbdrivertest.Exercise(t, func(t *testing.T) ebbdriver.Driver { return newDriver(t) })
}
