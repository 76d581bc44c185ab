package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tokenAtKey finds the token as the value of a token key (where a user puts
// it), not as some other value a problem may quote.
var tokenAtKey = regexp.MustCompile(`(?m)^\s*token:\s*"?0123456789abcdef0123456789abcdef"?\s*$`)

// FuzzLoad: any file, however broken, loads into a config or into an *Error
// whose every problem says where and what; never a panic, never a hang
// (aliases that merge themselves, alias bombs), and never the token in the
// message.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"broker: redis://127.0.0.1:6379/0\npools:\n  - name: default\n    queues: [default]\n    min: 0\n    max: 3\n",
		"server:\n  listen: 0.0.0.0:8080\n  token: 0123456789abcdef0123456789abcdef\npools: 3\n",
		"base: &b {min: 1}\npools:\n  - <<: *b\n    name: p\n    target: ecs\n    ecs: {cluster: c, service: s, region: us-east-1}\n",
		"schedules:\n  - name: s\n    cron: \"*/5 * * * *\"\n    kind: report\n    args: {day: 1}\n",
		"a: &a [*a]\n",
		"\t- :",
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	const token = "0123456789abcdef0123456789abcdef"
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(dir, "ebb.yaml")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		var c *Config
		var err error
		done := make(chan struct{})
		go func() { c, err = Load(path, nil); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Load(%q) still runs after 5 s", data)
		}
		if err == nil {
			if c == nil {
				t.Fatal("Load returned neither a config nor an error")
			}
			return
		}
		var ce *Error
		if !errors.As(err, &ce) || len(ce.Problems) == 0 {
			t.Fatalf("Load(%q) = %v (%T), want an *Error with problems", data, err, err)
		}
		for _, p := range ce.Problems {
			if p.Error() == "" {
				t.Fatalf("Load(%q): a problem without a message", data)
			}
		}
		if tokenAtKey.MatchString(data) && strings.Contains(err.Error(), token) {
			t.Fatalf("Load(%q): the error shows the token: %v", data, err)
		}
	})
}
