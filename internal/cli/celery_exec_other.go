//go:build !unix

package cli

import "errors"

func execProgram(string, []string, []string) error {
	return errors.New("celery-exec: replacing the process is supported on Unix systems only")
}
