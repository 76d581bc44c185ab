//go:build unix

package cli

import (
	"fmt"
	"syscall"
)

func execProgram(path string, argv, env []string) error {
	if err := syscall.Exec(path, argv, env); err != nil {
		return fmt.Errorf("celery-exec: exec %s: %w", path, err)
	}
	return nil
}
