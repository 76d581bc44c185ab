package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagProblemsNameTheFlag runs commands whose flags are wrong: each
// problem is named by the flag typed, not by the config path it sets, and
// says nothing of defaults.
func TestFlagProblemsNameTheFlag(t *testing.T) {
	// Not parallel: the commands read EBB_* variables, which must be unset.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "EBB_") {
			t.Setenv(k, "") // an empty variable counts as unset
		}
	}
	file := filepath.Join(t.TempDir(), "ebb.yaml")
	if err := os.WriteFile(file, []byte("pools:\n  - name: reports\n    max: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"up", "--concurrency", "0"}, "ebb up: invalid settings:\n--concurrency: 0 must be at least 1\n"},
		{[]string{"up", "--max", "0"}, "ebb up: invalid settings:\n--max: 0 must be at least 1\n"},
		// The scale-down delay follows a shorter idle time; a bad one is
		// reported once, as the flag, not again as the delay.
		{[]string{"up", "--idle-before-zero", "-5s"}, "ebb up: invalid settings:\n--idle-before-zero: -5s must be positive\n"},
		{[]string{"up", "--idle-before-zero", "0s", "--concurrency", "-1"},
			"ebb up: invalid settings:\n--concurrency: -1 must be at least 1\n--idle-before-zero: 0s must be positive\n"},
		{[]string{"up", "--listen", "8080"},
			"ebb up: invalid settings:\n--listen: \"8080\" is not host:port (e.g. 127.0.0.1:8080, or :8080 for every interface)\n"},
		{[]string{"up", "--broker", "mysql://db/x"},
			"ebb up: invalid settings:\n--broker: \"mysql://db/x\" names no broker ebb knows; use redis://host:port/db, rediss://…, postgres://host:5432/dbname or sqlite:path/to/file.db\n"},
		{[]string{"up", "--broker", "postgres:"},
			"ebb up: invalid settings:\n--broker: \"postgres:\" needs a host and database, e.g. postgres://127.0.0.1:5432/app\n"},
		{[]string{"server", "--config", file, "--listen", "127.0.0.1:http"},
			"ebb server: invalid config:\n--listen: port \"http\" is not a number from 0 to 65535\n"},
		{[]string{"server", "--broker", "sqlite:"}, "ebb server: invalid config:\n--broker: \"sqlite:\" needs a file path, e.g. sqlite:ebb.db\n"},
		// Checked before the broker is opened: a closed port must not matter.
		{[]string{"bench", "--broker", "redis://127.0.0.1:1/0", "--retention", "24h"},
			"ebb bench: --retention 24h0m0s: at most 1m0s, so that the run can delete its tasks before it exits\n"},
	} {
		t.Run(strings.ReplaceAll(strings.Join(tc.args, " "), file, "ebb.yaml"), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(tc.args, &stdout, &stderr); code != ExitUsage {
				t.Errorf("exit code %d, want %d (usage)", code, ExitUsage)
			}
			if got := stderr.String(); got != tc.want {
				t.Errorf("stderr =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
