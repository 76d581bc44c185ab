package procgroup

import (
	"syscall"
	"unsafe"
)

// SysProcAttr makes the child lead its own process group, and asks Linux to
// send it deathSig if the thread that started it dies.
func SysProcAttr(deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
}

// WaitUntilExited blocks until pid has exited without reaping it (waitid
// with WNOWAIT), so the caller can still signal its process group while the
// zombie holds the pid. It reports whether it did so.
func WaitUntilExited(pid int) bool {
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
