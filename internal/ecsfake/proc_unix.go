//go:build unix

package ecsfake

import "syscall"

const supported = true

// signalGroup signals a task's whole process group (each task leads its
// own), so a wrapper script and what it runs both hear it. Callers do so
// only while the leader has not been reaped: until then its pid, and so the
// group id, cannot belong to anyone else.
func signalGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig) // ESRCH: the group is gone already
}
