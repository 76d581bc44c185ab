package ecsfake

import (
	"syscall"
	"unsafe"
)

// sysProcAttr makes each task lead its own process group, and asks Linux to
// SIGKILL it if the thread that started it dies, so a crashed test leaves
// no tasks behind. Tasks are started by the scheduler's goroutine, which is
// not locked to its thread, and Go never ends such threads.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitUntilExited blocks until pid has exited without reaping it (waitid
// with WNOWAIT), so the caller can still signal its process group. It
// reports whether it did so.
func waitUntilExited(pid int) bool {
	const pPID = 1      // P_PID
	var info [16]uint64 // siginfo_t, unread
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.ENOSYS:
			return false
		}
		return true // exited, or ECHILD: not ours to signal either way
	}
}
