//go:build unix && !linux

package ecsfake

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// waitUntilExited cannot wait without reaping here: the reaper then marks
// the process reaped only after Wait, and a group signal sent in between
// could in theory reach a recycled group id.
func waitUntilExited(int) bool { return false }
