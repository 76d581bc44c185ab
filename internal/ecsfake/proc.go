package ecsfake

import (
	"syscall"

	"github.com/ebbq/ebb/internal/procgroup"
)

const supported = procgroup.Supported

// sysProcAttr makes each task lead its own process group, and asks Linux to
// SIGKILL it if the thread that started it dies, so a crashed test leaves
// no tasks behind. Tasks are started by the scheduler's goroutine, which is
// not locked to its thread, and Go never ends such threads.
func sysProcAttr() *syscall.SysProcAttr { return procgroup.SysProcAttr(syscall.SIGKILL) }

// waitUntilExited blocks until pid has exited without reaping it, so the
// caller can still signal its process group, and reports whether it did so.
// Outside Linux it cannot: the reaper then marks the process reaped only
// after Wait, and a group signal sent in between could in theory reach a
// recycled group id.
func waitUntilExited(pid int) bool { return procgroup.WaitUntilExited(pid) }

// signalGroup signals a task's whole process group (each task leads its
// own), so a wrapper script and what it runs both hear it. Callers do so
// only while the leader has not been reaped: until then its pid, and so the
// group id, cannot belong to anyone else.
func signalGroup(pid int, sig syscall.Signal) {
	_ = procgroup.Signal(pid, sig) // ESRCH: the group is gone already
}
