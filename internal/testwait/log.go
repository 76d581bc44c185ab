package testwait

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// Log collects what a logger writes, for tests that wait for a line or
// check what was said: the code under test logs from its own goroutines
// while the test reads.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// NewLog returns a Log and a debug-level text logger writing to it.
func NewLog() (*Log, *slog.Logger) {
	l := &Log{}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines returns the lines written so far that contain substr.
func (l *Log) Lines(substr string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}
