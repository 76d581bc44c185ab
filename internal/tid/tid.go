// Package tid makes task ids: 26-character, time-ordered, unique strings.
//
// The layout is ULID's (48-bit millisecond time, 80 random bits, Crockford
// base32), so ids sort by creation time as plain strings in every broker and
// are safe in Redis keys, URLs and file names. Within one process ids are
// strictly increasing: an id made in the same millisecond as the previous one
// increments the random part instead of drawing a new one.
package tid

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var (
	mu       sync.Mutex
	lastMS   uint64
	lastHi   uint16 // top 16 of the 80 random bits
	lastLo   uint64 // low 64 of the 80 random bits
	randPool [1024]byte
	randPos  = len(randPool)
)

// New returns a new id for the current time.
func New() string { return NewAt(time.Now()) }

// NewAt returns a new id whose time part is t (to the millisecond).
func NewAt(t time.Time) string {
	ms := uint64(t.UnixMilli())
	mu.Lock()
	if ms <= lastMS {
		// Same (or earlier, after a clock step back) millisecond: keep order by
		// incrementing the previous id.
		ms = lastMS
		lastLo++
		if lastLo == 0 {
			lastHi++
		}
	} else {
		if randPos+10 > len(randPool) {
			if _, err := rand.Read(randPool[:]); err != nil {
				panic("tid: crypto/rand failed: " + err.Error())
			}
			randPos = 0
		}
		lastHi = binary.BigEndian.Uint16(randPool[randPos:])
		// Leave head room so increments within a millisecond never carry.
		lastLo = binary.BigEndian.Uint64(randPool[randPos+2:]) >> 1
		randPos += 10
		lastMS = ms
	}
	hi, lo := lastHi, lastLo
	mu.Unlock()
	return encode(ms, hi, lo)
}

// Time returns the creation time encoded in id, or false if id is not a tid.
func Time(id string) (time.Time, bool) {
	if len(id) != 26 {
		return time.Time{}, false
	}
	var ms uint64
	for i := 0; i < 10; i++ {
		v := decodeChar(id[i])
		if v < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(v)
	}
	return time.UnixMilli(int64(ms)), true
}

func encode(ms uint64, hi uint16, lo uint64) string {
	var b [26]byte
	// 48-bit time in 10 chars (50 bits, top 2 zero).
	for i := 9; i >= 0; i-- {
		b[i] = alphabet[ms&31]
		ms >>= 5
	}
	// 80 random bits in 16 chars.
	for i := 25; i >= 10; i-- {
		b[i] = alphabet[lo&31]
		lo = lo>>5 | uint64(hi&31)<<59
		hi >>= 5
	}
	return string(b[:])
}

func decodeChar(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'z':
		c -= 'a' - 'A'
	}
	for i := 10; i < len(alphabet); i++ {
		if alphabet[i] == c {
			return i
		}
	}
	return -1
}
