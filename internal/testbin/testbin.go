// Package testbin builds the `ebb` binary for tests that run it as real
// processes (e2e, e2e/k8s).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// BuildEbb builds ./cmd/ebb into out without -race even when the tests
// themselves run under it: the kill and soak tests push tens of thousands of
// tasks through the binary, and the race detector would slow it several
// times over.
func BuildEbb(out string) error {
	cmd := exec.Command("go", "build", "-o", out, "github.com/ebbq/ebb/cmd/ebb")
	var env []string
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if f != "-race" && f != "--race" {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		env = append(env, kv)
	}
	cmd.Env = env
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/ebb failed: %v\n%s", err, output)
	}
	return nil
}
