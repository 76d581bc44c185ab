//go:build !unix

package ecsfake

import "syscall"

const supported = false

func sysProcAttr() *syscall.SysProcAttr { return nil }

func waitUntilExited(int) bool { return false }

func signalGroup(int, syscall.Signal) {}
