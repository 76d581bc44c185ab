package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ebbq/ebb/internal/testpg"
)

// TestMigrateCommand runs `ebb migrate` up, status, down on a schema of its
// own, and on a broker without migrations.
func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	url := testpg.SchemaURL(t)
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Main(append([]string{"migrate"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, _ := run("status", "--broker", url); code != ExitOK || !strings.Contains(out, "1        initial  no") {
		t.Errorf("status of a new schema: exit %d, %q", code, out)
	}
	if code, out, errOut := run("up", "--broker", url); code != ExitOK || strings.Contains(out, " no\n") || !strings.Contains(errOut, "applied: versions [1]") {
		t.Errorf("up: exit %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := run("up", "--broker", url); code != ExitOK || !strings.Contains(errOut, "up to date") {
		t.Errorf("second up: exit %d, %q", code, errOut)
	}
	if code, out, _ := run("status", "--broker", url, "--json"); code != ExitOK || !strings.Contains(out, `"applied": true`) {
		t.Errorf("status --json: exit %d, %q", code, out)
	}
	if code, out, errOut := run("down", "--broker", url); code != ExitOK || !strings.Contains(out, "initial  no") || !strings.Contains(errOut, "reverted: versions [1]") {
		t.Errorf("down: exit %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := run("up", "--broker", "sqlite:"+t.TempDir()+"/ebb.db"); code != ExitUsage || !strings.Contains(errOut, "only postgres:// brokers have migrations") {
		t.Errorf("up on SQLite: exit %d, %q", code, errOut)
	}
	if code, _, _ := run("sideways", "--broker", url); code != ExitUsage {
		t.Errorf("migrate sideways: exit %d, want %d", code, ExitUsage)
	}
}
