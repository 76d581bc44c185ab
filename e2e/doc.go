// Package e2e holds end-to-end tests that run the real `ebb` binary as
// separate processes against private brokers (a redis-server per test, or a
// SQLite file per test), kill, stop and signal those processes, and check the
// outcome through the Go API. It has no exported API: everything is in its
// _test.go files.
package e2e
