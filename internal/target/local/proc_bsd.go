//go:build unix && !linux

package local

import "syscall"

// Outside Linux there is no parent-death signal: if the server dies, its
// workers run on until they are drained through the broker or stopped.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitUntilExited cannot wait without reaping here; the reaper marks the
// instance gone right after Wait instead, which leaves a tiny window in
// which a recycled pid could be signalled.
func waitUntilExited(int) bool { return false }
