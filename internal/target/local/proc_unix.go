//go:build unix

package local

import (
	"os"
	"syscall"

	"github.com/ebbq/ebb/internal/procgroup"
)

const supported = true

// signalGroup signals the instance's whole process group, so a wrapper
// script and the worker it runs both hear it. Callers only do so while the
// group leader has not been reaped: until then its pid, and so the group id,
// cannot belong to anyone else.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return procgroup.Signal(p.Pid, sig)
}

func exitStatus(ps *os.ProcessState) (code int, sig syscall.Signal) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.ExitCode(), 0
	}
	if ws.Signaled() {
		return -1, ws.Signal()
	}
	return ws.ExitStatus(), 0
}
