//go:build !unix

package local

import (
	"os"
	"syscall"
)

// Workers drain on SIGTERM, which other systems cannot send; New refuses to
// build a local target there.
const supported = false

func signalGroup(p *os.Process, _ syscall.Signal) error { return p.Kill() }

func exitStatus(ps *os.ProcessState) (int, syscall.Signal) { return ps.ExitCode(), 0 }
