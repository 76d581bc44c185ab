//go:build unix

package ebbsqlite

import (
	"errors"
	"path/filepath"
	"syscall"
)

// readOnlyFS reports whether the directory holding path is on a file system
// mounted read-only, which SQLite reports only as "unable to open" or
// "readonly", the same as a permission problem.
func readOnlyFS(path string) bool {
	const wOK = 2
	return errors.Is(syscall.Access(filepath.Dir(path), wOK), syscall.EROFS)
}
