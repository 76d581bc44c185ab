package main

import "syscall"

// sysProcAttr makes the server get SIGTERM if this command dies, so a
// killed run does not leave a server and its workers behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
