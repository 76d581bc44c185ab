package procmem

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// The test binary gives back its own code and read-only data and goes on
// running: what it needs comes back on the next touch.
func TestReleaseStartupPagesShrinksTheProcess(t *testing.T) {
	before := rssFile(t)
	r, err := ReleaseStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if r.Mappings < 2 || r.Bytes <= 0 {
		t.Fatalf("released %+v; want the executable's code and read-only data", r)
	}
	if after >= before {
		t.Fatalf("RssFile %d → %d bytes after releasing %d; want it smaller", before, after, r.Bytes)
	}
	t.Logf("RssFile %d → %d KiB (released %d KiB from %d mappings)", before>>10, after>>10, r.Bytes>>10, r.Mappings)
	// Code and constants still work after the release.
	if got := strconv.Itoa(12345) + strings.Repeat("x", 2); got != "12345xx" {
		t.Fatalf("got %q", got)
	}
}

// Only the executable's read-only mappings without private copies are
// candidates: data (writable) and relocated read-only data (anonymous
// pages) keep their pages.
func TestParseSmapsPicksTheExecutable(t *testing.T) {
	const smaps = `00400000-00600000 r-xp 00000000 08:01 12 /usr/bin/ebb
Size:               2048 kB
Rss:                1024 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00600000-00700000 r--p 00200000 08:01 12 /usr/bin/ebb
Rss:                 512 kB
Anonymous:             8 kB
00700000-00710000 rw-p 00300000 08:01 12 /usr/bin/ebb
Rss:                  64 kB
Anonymous:            64 kB
7f0000000000-7f0000100000 r-xp 00000000 08:01 99 /usr/lib/libc.so.6
Rss:                 900 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Rss:                 100 kB
`
	maps, err := parseSmaps(bufio.NewScanner(strings.NewReader(smaps)), "/usr/bin/ebb")
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{start: 0x400000, end: 0x600000, rss: 1024 << 10},
		{start: 0x600000, end: 0x700000, rss: 512 << 10, anonymous: 8 << 10},
		{start: 0x700000, end: 0x710000, writable: true, rss: 64 << 10, anonymous: 64 << 10},
	}
	if len(maps) != len(want) {
		t.Fatalf("got %d mappings %+v; want %d", len(maps), maps, len(want))
	}
	for i := range want {
		if maps[i] != want[i] {
			t.Errorf("mapping %d = %+v; want %+v", i, maps[i], want[i])
		}
	}
	if _, err := parseSmaps(bufio.NewScanner(strings.NewReader("zz-00400000 r-xp 0 0 0 /usr/bin/ebb\n")), "/usr/bin/ebb"); err == nil {
		t.Error("a bad range parsed without error")
	}
}
