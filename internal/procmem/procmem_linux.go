package procmem

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// ReleaseStartupPages drops this process's resident pages of its own
// executable's read-only mappings (code and read-only data), the ones an
// idle process does not touch again. A mapping holding any private
// (anonymous) page is left alone: under a PIE build the read-only data
// after relocation is such a copy, and releasing it would bring back the
// file's unrelocated bytes.
func ReleaseStartupPages() (Released, error) {
	var r Released
	// What init allocated and dropped goes back first: the collection
	// reads the type of every live object, and those pages of the binary
	// should be released after it, not faulted in again by it.
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return r, fmt.Errorf("procmem: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return r, fmt.Errorf("procmem: %w", err)
	}
	defer f.Close()
	maps, err := parseSmaps(bufio.NewScanner(f), exe)
	if err != nil {
		return r, fmt.Errorf("procmem: reading /proc/self/smaps: %w", err)
	}
	for _, m := range maps {
		if m.writable || m.rss == 0 {
			continue
		}
		if m.anonymous > 0 {
			r.Skipped++
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); errno != 0 {
			return r, fmt.Errorf("procmem: madvise %x-%x: %w", m.start, m.end, errno)
		}
		r.Mappings++
		r.Bytes += m.rss
	}
	return r, nil
}

// mapping is one entry of /proc/self/smaps.
type mapping struct {
	start, end     uintptr
	writable       bool
	rss, anonymous int64 // bytes
}

// parseSmaps returns the mappings of path.
func parseSmaps(sc *bufio.Scanner, path string) ([]mapping, error) {
	var out []mapping
	var cur *mapping
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a mapping's header: range perms offset dev inode [path]
			cur = nil
			if len(fields) < 6 || fields[5] != path {
				continue
			}
			lo, hi, ok := strings.Cut(fields[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil {
				return nil, fmt.Errorf("bad mapping range %q", fields[0])
			}
			out = append(out, mapping{start: uintptr(start), end: uintptr(end), writable: strings.Contains(fields[1], "w")})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil || len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "Rss:", "Anonymous:":
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("bad %s line %q", fields[0], line)
			}
			if fields[0] == "Rss:" {
				cur.rss = kb << 10
			} else {
				cur.anonymous = kb << 10
			}
		}
	}
	return out, sc.Err()
}
