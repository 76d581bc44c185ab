package ebbredis

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// parseMsg decodes msg as appendMsg writes it, without reflection: Fetch
// decodes one per claimed task, and encoding/json took a large share of a
// worker's CPU. Anything it does not expect (other key order is fine; an
// unknown key, odd whitespace, a syntax error) makes it give up, and the
// caller falls back to encoding/json, which also words the error.
func parseMsg(s string, m *ebbtype.TaskInfo) bool {
	p := msgParser{s: s}
	if !p.byte('{') {
		return false
	}
	if p.peek() == '}' {
		return p.i+1 == len(s)
	}
	for {
		key, ok := p.str()
		if !ok || !p.byte(':') {
			return false
		}
		switch key {
		case "id":
			m.ID, ok = p.str()
		case "k":
			m.Kind, ok = p.str()
		case "q":
			m.Queue, ok = p.str()
		case "u":
			m.UniqueKey, ok = p.str()
		case "a":
			start := p.i
			// skip finds the value's end; json.Valid checks its grammar,
			// because a damaged record's args would otherwise reach the API
			// as a RawMessage that cannot be marshalled (found by fuzzing).
			if ok = p.skip() && json.Valid([]byte(s[start:p.i])); ok {
				m.EncodedArgs = json.RawMessage(s[start:p.i])
			}
		case "h":
			m.Headers, ok = p.headers()
		case "p":
			ok = intField(&p, &m.Priority)
		case "m":
			ok = intField(&p, &m.MaxAttempts)
		case "to":
			ok = intField(&p, &m.Timeout)
		case "r":
			ok = intField(&p, &m.Retention)
		case "ut":
			ok = intField(&p, &m.UniqueTTL)
		case "e":
			var n int64
			n, ok = p.int()
			if n != 0 {
				m.EnqueuedAt = time.Unix(0, n)
			}
		default:
			return false
		}
		if !ok {
			return false
		}
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			return p.i+1 == len(s)
		default:
			return false
		}
	}
}

type msgParser struct {
	s string
	i int
}

func (p *msgParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *msgParser) byte(c byte) bool {
	if p.peek() != c {
		return false
	}
	p.i++
	return true
}

// str reads a JSON string. Escapes are rare in these fields; a string with
// one is handed to encoding/json.
func (p *msgParser) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	escaped := false
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == '"':
			p.i++
			if !escaped {
				return p.s[start : p.i-1], true
			}
			var v string
			if json.Unmarshal([]byte(p.s[start-1:p.i]), &v) != nil {
				return "", false
			}
			return v, true
		case c == '\\':
			escaped = true
			p.i += 2
		case c < 0x20:
			return "", false
		default:
			p.i++
		}
	}
	return "", false
}

func (p *msgParser) int() (int64, bool) {
	start := p.i
	if p.peek() == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	if p.i-digits > 1 && p.s[digits] == '0' {
		return 0, false // JSON has no leading zeros (found by fuzzing)
	}
	n, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
	return n, err == nil
}

// intField reads a JSON integer into one of the message's int fields.
func intField[T ~int | ~int64](p *msgParser, dst *T) bool {
	n, ok := p.int()
	*dst = T(n)
	return ok
}

func (p *msgParser) headers() (map[string]string, bool) {
	if !p.byte('{') {
		return nil, false
	}
	h := map[string]string{}
	if p.byte('}') {
		return h, true
	}
	for {
		k, ok := p.str()
		if !ok || !p.byte(':') {
			return nil, false
		}
		v, ok := p.str()
		if !ok {
			return nil, false
		}
		h[k] = v
		if p.byte('}') {
			return h, true
		}
		if !p.byte(',') {
			return nil, false
		}
	}
}

// skip passes over one JSON value (Args, embedded verbatim). It follows
// nesting and strings only, to find where the value ends; the caller checks
// the grammar.
func (p *msgParser) skip() bool {
	depth := 0
	for p.i < len(p.s) {
		switch c := p.s[p.i]; c {
		case '"':
			if _, ok := p.str(); !ok {
				return false
			}
			if depth == 0 {
				return true
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return true // end of msg, value was a scalar
			}
			depth--
			if depth == 0 {
				p.i++
				return true
			}
		case ',':
			if depth == 0 {
				return true
			}
		}
		p.i++
	}
	return false
}
