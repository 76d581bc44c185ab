package ebbpostgres_test

import (
	"net"
	"testing"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbdrivertest"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/internal/testpg"
)

// newDriver opens a driver on a fresh schema of the shared test database.
func newDriver(t testing.TB) *ebbpostgres.Driver {
	t.Helper()
	testpg.Check(t)
	d, err := ebbpostgres.Open(t.Context(), testpg.SchemaURL(t), nil)
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

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
