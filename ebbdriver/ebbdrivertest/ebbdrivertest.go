// Package ebbdrivertest is the conformance suite every ebb broker driver must
// pass. A driver package calls Exercise from its own tests with a factory that
// makes fresh, isolated drivers:
//
//	func TestDriver(t *testing.T) {
//		ebbdrivertest.Exercise(t, func(t *testing.T) ebbdriver.Driver {
//			d := New(…)
//			t.Cleanup(func() { d.Close() })
//			return d
//		})
//	}
//
// Every subtest gets its own driver and runs in parallel, so a failure names
// one behaviour of the contract in ebbdriver/driver.go. Time is driven through
// the contract's Now parameters wherever the contract takes one; only
// behaviour that may rest on the broker's own clock (retention and unique-key
// expiry, worker TTLs) waits for wall-clock time, in bounded polls.
//
// Malformed records cannot be produced through the interface, so drivers test
// that path themselves.
package ebbdrivertest

import (
	"testing"

	"github.com/ebbq/ebb/ebbdriver"
)

// Factory returns a fresh, empty driver isolated from every other test (its
// own key prefix or database file), closed by the factory's t.Cleanup.
type Factory func(t *testing.T) ebbdriver.Driver

// Exercise runs the conformance suite against drivers made by newDriver.
func Exercise(t *testing.T, newDriver Factory) {
	t.Helper()

	// Groups are alphabetized, as are the subtests inside each group.
	groups := []struct {
		name string
		run  func(*testing.T, Factory)
	}{
		{"API", testAPI},
		{"Cleanup", testCleanup},
		{"Complete", testComplete},
		{"Control", testControl},
		{"DeadList", testDeadList},
		{"DeadPurge", testDeadPurge},
		{"DeadRetry", testDeadRetry},
		{"Enqueue", testEnqueue},
		{"ExtendLeases", testExtendLeases},
		{"Fetch", testFetch},
		{"Listen", testListen},
		{"Name", testName},
		{"PromoteDue", testPromoteDue},
		{"QueueStats", testQueueStats},
		{"RescueExpired", testRescueExpired},
		{"Schedules", testSchedules},
		{"TaskAwait", testTaskAwait},
		{"TaskCancel", testTaskCancel},
		{"TaskDelete", testTaskDelete},
		{"TaskGet", testTaskGet},
		{"TaskList", testTaskList},
		{"TaskRetry", testTaskRetry},
		{"Worker", testWorker},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t, newDriver)
		})
	}
}
