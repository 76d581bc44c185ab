package local

import (
	"syscall"

	"github.com/ebbq/ebb/internal/procgroup"
)

// sysProcAttr puts each worker in its own process group, so Shutdown can
// SIGKILL whatever it spawned and a terminal's Ctrl-C reaches only the
// server (which drains the pool through the broker), and asks Linux to
// SIGTERM the worker if the thread that started it dies: when the server
// crashes, its workers drain by themselves instead of running on unowned.
// The spawner keeps that thread alive for as long as its workers. Outside
// Linux there is no parent-death signal: if the server dies, its workers
// run on until they are drained through the broker or stopped.
func sysProcAttr() *syscall.SysProcAttr { return procgroup.SysProcAttr(syscall.SIGTERM) }

// waitUntilExited blocks until pid has exited without reaping it, so the
// reaper can stop group signals while the zombie still holds the pid, and
// reports whether it did so. Outside Linux it cannot; the reaper marks the
// instance gone right after Wait instead, which leaves a tiny window in
// which a recycled pid could be signalled.
func waitUntilExited(pid int) bool { return procgroup.WaitUntilExited(pid) }
