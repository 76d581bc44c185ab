package local

import (
	"os/exec"
	"runtime"
	"sync"
)

// spawner starts worker processes from one goroutine locked to its OS
// thread. Linux sends the parent-death signal when the thread that forked a
// child exits, not the process (golang/go#27505), and the Go runtime ends a
// thread whenever a goroutine locked to it returns; a worker forked from a
// shared thread could be told to drain because some unrelated goroutine
// finished. The locked thread lives until every child it started has been
// reaped.
type spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner(wg *sync.WaitGroup) *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	wg.Go(func() {
		runtime.LockOSThread()
		// Returning while locked ends the thread: no child of it is alive
		// by then (see releaseSpawnerLocked), and no other goroutine can
		// inherit it.
		for r := range s.reqs {
			r.done <- r.cmd.Start()
		}
	})
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd, done}
	return <-done
}

// stop lets the goroutine return; only the owner calls it, once.
func (s *spawner) stop() { close(s.reqs) }
