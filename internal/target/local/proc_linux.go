package local

import (
	"syscall"
	"unsafe"
)

// sysProcAttr puts each worker in its own process group, so Shutdown can
// SIGKILL whatever it spawned and a terminal's Ctrl-C reaches only the
// server (which drains the pool through the broker), and asks Linux to
// SIGTERM the worker if the thread that started it dies: when the server
// crashes, its workers drain by themselves instead of running on unowned.
// The spawner keeps that thread alive for as long as its workers.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// waitUntilExited blocks until pid has exited without reaping it
// (waitid with WNOWAIT), so the reaper can stop group signals while the
// zombie still holds the pid. It reports whether it did so.
func waitUntilExited(pid int) bool {
	const pPID = 1      // P_PID
	var info [16]uint64 // siginfo_t, unread
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.ENOSYS: // some emulated kernels
			return false
		}
		return true // exited, or ECHILD: not ours to signal any more either way
	}
}
