//go:build unix

package procgroup

import (
	"errors"
	"syscall"
)

// Supported reports whether this system has process groups to signal.
const Supported = true

// Signal signals the whole process group that pid leads, so a wrapper
// script and what it runs both hear it; a group that is gone already is no
// error. Callers do so only while the leader has not been reaped: until
// then its pid, and so the group id, cannot belong to anyone else.
func Signal(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
