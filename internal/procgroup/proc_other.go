//go:build !unix

package procgroup

import (
	"errors"
	"syscall"
)

// Supported reports whether this system has process groups to signal.
const Supported = false

func SysProcAttr(syscall.Signal) *syscall.SysProcAttr { return nil }

func WaitUntilExited(int) bool { return false }

func Signal(int, syscall.Signal) error { return errors.ErrUnsupported }
