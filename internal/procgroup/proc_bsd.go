//go:build unix && !linux

package procgroup

import "syscall"

// SysProcAttr makes the child lead its own process group. Outside Linux
// there is no parent-death signal, so deathSig is not sent.
func SysProcAttr(deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// WaitUntilExited cannot wait without reaping here, and reports false: the
// caller then learns of the exit only from Wait, which leaves a tiny window
// in which a group signal could reach a recycled group id.
func WaitUntilExited(int) bool { return false }
