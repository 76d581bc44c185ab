package ebbredis

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ebbq/ebb/ebbtype"
)

// --- times -------------------------------------------------------------------

// nsString is how times are stored in hashes and passed to scripts: exact,
// and a script gets the µs score by cutting the last three digits.
func nsString(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

func parseNS(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func usString(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

func fromUS(f float64) time.Time {
	if f == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(f))
}

// ceilMS rounds a positive duration up to whole milliseconds (retention, unique TTL),
// so 1µs of retention is not turned into "delete now".
func ceilMS(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// --- msg: the immutable part of a task ---------------------------------------

// msg is a task's immutable part, stored once per task and carried by every
// Fetch, as a JSON object with short keys (see doc.go): "id", "k" kind, "q"
// queue, "a" args, "h" headers, "p" priority, "m" max attempts, "to"
// timeout, "r" retention, "u" unique key, "ut" unique TTL (durations in ns)
// and "e" enqueued at (Unix ns). appendMsg writes it and parseMsg reads it
// straight into an ebbtype.TaskInfo, so no second task struct exists.

// appendMsg encodes t's immutable part. It is hand-written because it runs
// for every enqueued task and because it embeds Args verbatim but for
// surrounding whitespace (encoding/json would compact them).
func appendMsg(b []byte, t *ebbtype.TaskInfo) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, t.ID)
	b = append(b, `,"k":`...)
	b = appendJSONString(b, t.Kind)
	b = append(b, `,"q":`...)
	b = appendJSONString(b, t.Queue)
	if args := bytes.TrimSpace(t.EncodedArgs); len(args) > 0 {
		if !json.Valid(args) {
			return b, errors.New("args are not valid JSON; Args must hold a JSON document")
		}
		b = append(b, `,"a":`...)
		b = append(b, args...)
	}
	if len(t.Headers) > 0 {
		b = append(b, `,"h":{`...)
		first := true
		for k, v := range t.Headers {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, v)
		}
		b = append(b, '}')
	}
	b = append(b, `,"p":`...)
	b = strconv.AppendInt(b, int64(t.Priority), 10)
	b = append(b, `,"m":`...)
	b = strconv.AppendInt(b, int64(t.MaxAttempts), 10)
	if t.Timeout != 0 {
		b = append(b, `,"to":`...)
		b = strconv.AppendInt(b, int64(t.Timeout), 10)
	}
	if t.Retention != 0 {
		b = append(b, `,"r":`...)
		b = strconv.AppendInt(b, int64(t.Retention), 10)
	}
	if t.UniqueKey != "" {
		b = append(b, `,"u":`...)
		b = appendJSONString(b, t.UniqueKey)
	}
	if t.UniqueTTL != 0 {
		b = append(b, `,"ut":`...)
		b = strconv.AppendInt(b, int64(t.UniqueTTL), 10)
	}
	b = append(b, `,"e":`...)
	if t.EnqueuedAt.IsZero() {
		b = append(b, '0')
	} else {
		b = strconv.AppendInt(b, t.EnqueuedAt.UnixNano(), 10)
	}
	return append(b, '}'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string the way encoding/json does
// (invalid UTF-8 becomes U+FFFD), minus the HTML escaping nobody needs here.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// decodeMsg fills rec's immutable fields from msg, parsing straight into rec
// (it runs for every fetched task). On failure rec keeps its ID and Queue,
// fields the msg did hold may be filled in, and the error says what is wrong.
func decodeMsg(rec *ebbtype.TaskInfo, msg string) error {
	id, queue := rec.ID, rec.Queue
	rec.ID = ""
	ok := parseMsg(msg, rec)
	if !ok {
		// parseMsg reads only what appendMsg writes; compacted, a msg
		// written by hand (other whitespace) may still read, and otherwise
		// encoding/json words what is wrong with it.
		var buf bytes.Buffer
		if err := json.Compact(&buf, []byte(msg)); err != nil {
			rec.ID, rec.Queue = id, queue
			return fmt.Errorf("stored task data (msg) is not valid: %v", err)
		}
		ok = parseMsg(buf.String(), rec)
	}
	msgID := rec.ID
	rec.ID = id
	if !ok || (msgID != "" && msgID != id) || rec.Queue == "" {
		rec.Queue = queue
	}
	switch {
	case !ok:
		return errors.New("stored task data (msg) is not valid: unexpected field or value type")
	case msgID != "" && msgID != id:
		return fmt.Errorf("stored task data (msg) names task %q, not %q", msgID, id)
	case rec.Kind == "":
		return errors.New("stored task data (msg) has no kind")
	}
	return nil
}

// --- errors history ------------------------------------------------------------

// errJSON is one stored AttemptError. At is in ns so it round-trips exactly,
// and so a script can write one (lease expiry) without formatting dates.
type errJSON struct {
	Attempt  int    `json:"attempt"`
	At       int64  `json:"at"`
	Error    string `json:"error"`
	Stack    string `json:"stack,omitempty"`
	WorkerID string `json:"worker_id,omitempty"`
}

func appendErr(b []byte, e *ebbtype.AttemptError) []byte {
	b = append(b, `{"attempt":`...)
	b = strconv.AppendInt(b, int64(e.Attempt), 10)
	b = append(b, `,"at":`...)
	if e.At.IsZero() {
		b = append(b, '0')
	} else {
		b = strconv.AppendInt(b, e.At.UnixNano(), 10)
	}
	b = append(b, `,"error":`...)
	b = appendJSONString(b, e.Error)
	if e.Stack != "" {
		b = append(b, `,"stack":`...)
		b = appendJSONString(b, e.Stack)
	}
	if e.WorkerID != "" {
		b = append(b, `,"worker_id":`...)
		b = appendJSONString(b, e.WorkerID)
	}
	return append(b, '}')
}

func decodeErrors(s string) ([]ebbtype.AttemptError, error) {
	if s == "" {
		return nil, nil
	}
	var es []errJSON
	if err := json.Unmarshal([]byte(s), &es); err != nil {
		return nil, fmt.Errorf("stored error history (err) is not valid: %v", err)
	}
	out := make([]ebbtype.AttemptError, len(es))
	for i, e := range es {
		out[i] = ebbtype.AttemptError{Attempt: e.Attempt, Error: e.Error, Stack: e.Stack, WorkerID: e.WorkerID}
		if e.At != 0 {
			out[i].At = time.Unix(0, e.At)
		}
	}
	return out, nil
}

// --- whole records -------------------------------------------------------------

// A task is one field of its queue's P:{q}:tasks hash: a record that the
// scripts read and rewrite whole (one HGET and one HSET a step, the
// cheapest a script can touch a task). It is a header line of fields
// separated by single spaces, then a body of variable-length parts whose
// lengths the header gives, then the immutable msg to the end:
//
//	<st> <a> <run> <k> <max> <fa> <cx> <lease> <started> <#tok> <#worker> <#u> <#err> <#res>\n
//	<tok><worker><u><err><res><msg>
//
// st state name, a attempts started, run RunAt ns, k the packed immutable
// facts (see scripts.go), max max attempts, fa finished ns, cx "1" when
// cancellation was requested while running, lease and started the latest
// claim's lease expiry and start (ns, "0" when never claimed), tok that
// claim's lease token (empty whenever the task is not running, so the
// fence is "tok equals the caller's token"), worker its worker id, u the
// unique key, err the error history (a JSON array), res the result JSON.
const recFields = 14

// appendRecord writes the record of a task just enqueued (see above).
func appendRecord(b []byte, st, run, k string, maxAttempts int, unique string, msg []byte) []byte {
	b = append(b, st...)
	b = append(b, " 0 "...)
	b = append(b, run...)
	b = append(b, ' ')
	b = append(b, k...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(maxAttempts), 10)
	b = append(b, " 0 0 0 0 0 0 "...)
	b = strconv.AppendInt(b, int64(len(unique)), 10)
	b = append(b, " 0 0\n"...)
	b = append(b, unique...)
	return append(b, msg...)
}

// recordParts splits a record into its header fields and body parts (tok,
// worker, u, err, res, msg), or says why it cannot.
func recordParts(s string) (hdr [recFields]string, parts [6]string, err error) {
	nl := strings.IndexByte(s, '\n')
	if nl < 0 {
		return hdr, parts, errors.New("stored task record has no header line")
	}
	f := strings.Split(s[:nl], " ")
	if len(f) != recFields {
		return hdr, parts, fmt.Errorf("stored task record header has %d fields, want %d", len(f), recFields)
	}
	copy(hdr[:], f)
	p := nl + 1
	for i := range 5 {
		n, err := strconv.Atoi(hdr[9+i])
		if err != nil || n < 0 || n > len(s)-p {
			return hdr, parts, fmt.Errorf("stored task record header gives part %d the length %q, past the record's end", i+1, hdr[9+i])
		}
		parts[i] = s[p : p+n]
		p += n
	}
	parts[5] = s[p:]
	return hdr, parts, nil
}

// decodeRecord builds a TaskInfo from a stored record. Whatever cannot be
// decoded is reported in Malformed; the record is never dropped.
func decodeRecord(queue, id, s string) *ebbtype.TaskInfo {
	rec := &ebbtype.TaskInfo{ID: id, Queue: queue}
	hdr, parts, err := recordParts(s)
	if err != nil {
		rec.Malformed = err.Error()
		return rec
	}
	var problems []string
	if parts[5] == "" {
		problems = append(problems, "stored task has no data (msg missing)")
	} else if err := decodeMsg(rec, parts[5]); err != nil {
		problems = append(problems, err.Error())
	}
	rec.State = ebbtype.State(hdr[0])
	if !rec.State.Valid() {
		problems = append(problems, fmt.Sprintf("stored state %q is unknown", hdr[0]))
	}
	n, err := strconv.Atoi(hdr[1])
	if err != nil {
		problems = append(problems, fmt.Sprintf("stored attempt %q is not a number", hdr[1]))
	}
	rec.Attempt = n
	rec.RunAt = parseNS(hdr[2])
	rec.StartedAt = parseNS(hdr[8])
	rec.WorkerID = parts[1]
	if rec.State == ebbtype.StateRunning {
		rec.LeaseToken = parts[0]
		rec.LeaseExpiresAt = parseNS(hdr[7])
	}
	rec.FinishedAt = parseNS(hdr[5])
	rec.CancelRequested = hdr[6] == "1"
	if es, err := decodeErrors(parts[3]); err != nil {
		problems = append(problems, err.Error())
	} else {
		rec.Errors = es
	}
	if parts[4] != "" {
		rec.Result = []byte(parts[4])
	}
	if len(problems) > 0 {
		rec.Malformed = joinProblems(problems)
	}
	return rec
}

func joinProblems(ps []string) string {
	s := ps[0]
	for _, p := range ps[1:] {
		s += "; " + p
	}
	return s
}

// storedJSON reads a JSON-valued field (schedule args, decision inputs) of a
// record stored as JSON. Nothing is stored as null; and versions before the
// shared ebbtype structs stored these fields as []byte, which encoding/json
// writes as a base64 string. Neither field is ever a JSON string itself (args
// of a schedule are an object), so a string can only be that old encoding.
func storedJSON(b json.RawMessage) json.RawMessage {
	switch {
	case len(b) == 0 || string(b) == "null":
		return nil
	case b[0] == '"':
		var raw []byte
		if json.Unmarshal(b, &raw) == nil {
			return raw
		}
	}
	return b
}
