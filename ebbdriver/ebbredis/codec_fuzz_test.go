package ebbredis

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ebbq/ebb/ebbtype"
)

// msgStd is the msg as encoding/json reads it: the reference parseMsg must
// agree with wherever both accept the input.
type msgStd struct {
	ID string            `json:"id"`
	K  string            `json:"k"`
	Q  string            `json:"q"`
	A  json.RawMessage   `json:"a"`
	H  map[string]string `json:"h"`
	P  int               `json:"p"`
	M  int               `json:"m"`
	To int64             `json:"to"`
	R  int64             `json:"r"`
	U  string            `json:"u"`
	Ut int64             `json:"ut"`
	E  int64             `json:"e"`
}

// FuzzParseMsg feeds the hand-written msg parser what a damaged or
// hand-edited record could hold. It must never panic, decodeMsg must keep
// the record's id and queue whatever the msg says, and where the msg is
// valid JSON of the right shape, parseMsg must read what encoding/json reads.
func FuzzParseMsg(f *testing.F) {
	now := time.Unix(1_700_000_000, 1)
	for _, r := range []*ebbtype.TaskInfo{
		{ID: "x", Kind: "k", Queue: "q", Priority: 2, MaxAttempts: 1, EnqueuedAt: now},
		{ID: "01ABC", Kind: "email.send", Queue: "emails", EncodedArgs: []byte(`{"to":["a@b",{"n":-1.5e3}],"s":"x,}]\"y"}`),
			Headers: map[string]string{"trace": "00-1", "q\"": "new\nline"}, Priority: 1, MaxAttempts: 7,
			Timeout: time.Second, Retention: time.Hour, UniqueKey: "u:é", UniqueTTL: time.Minute, EnqueuedAt: now},
	} {
		b, err := appendMsg(nil, r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(`{"id":"x","k":"k","q":"q","a":{"n":[1,"]"]},"h":{"a":"b"},"p":2,"m":3,"e":1}`)
	f.Add(`{}`)
	f.Add(`{"id":"x","k":"k","a":[1,{"b":"}"}],"p":-1}`)
	f.Add(`{"k":"\u0041","h":{},"e":9223372036854775807}`)
	f.Fuzz(func(t *testing.T, msg string) {
		var got ebbtype.TaskInfo
		ok := parseMsg(msg, &got)

		rec := &ebbtype.TaskInfo{ID: "the-id", Queue: "the-queue"}
		err := decodeMsg(rec, msg)
		if rec.ID != "the-id" {
			t.Fatalf("decodeMsg(%q) changed the id to %q", msg, rec.ID)
		}
		if err == nil && (rec.Kind == "" || rec.Queue == "") {
			t.Fatalf("decodeMsg(%q) = nil with kind %q, queue %q", msg, rec.Kind, rec.Queue)
		}
		if !ok {
			return
		}
		if !json.Valid([]byte(msg)) {
			t.Fatalf("parseMsg accepted invalid JSON %q", msg)
		}
		// What parseMsg reads, appendMsg writes back the same (no headers
		// and empty headers are one thing).
		if len(got.Headers) == 0 {
			got.Headers = nil
		}
		got.EncodedArgs = bytes.TrimSpace(got.EncodedArgs)
		b, err := appendMsg(nil, &got)
		if err != nil {
			t.Fatalf("appendMsg of parsed %q: %v", msg, err)
		}
		var again ebbtype.TaskInfo
		if !parseMsg(string(b), &again) || !reflect.DeepEqual(got, again) && utf8.ValidString(msg) {
			t.Fatalf("parseMsg(%q) = %+v; after appendMsg %s: %+v", msg, got, b, again)
		}
		if !utf8.ValidString(msg) {
			return // parseMsg keeps invalid UTF-8 as it is; appendMsg never writes it
		}
		var want msgStd
		if err := json.Unmarshal([]byte(msg), &want); err != nil {
			t.Fatalf("parseMsg accepted %q, which encoding/json rejects: %v", msg, err)
		}
		if strings.Count(msg, `"`+`id"`) > 1 || hasDuplicateKeys(msg) {
			return // last-wins and first-wins are both fine for a damaged record
		}
		same := got.ID == want.ID && got.Kind == want.K && got.Queue == want.Q && got.UniqueKey == want.U &&
			got.Priority == ebbtype.Priority(want.P) && got.MaxAttempts == want.M && int64(got.Timeout) == want.To &&
			int64(got.Retention) == want.R && int64(got.UniqueTTL) == want.Ut && string(got.EncodedArgs) == string(want.A) &&
			maps.Equal(got.Headers, want.H) && (got.EnqueuedAt.IsZero() && want.E == 0 || got.EnqueuedAt.UnixNano() == want.E)
		if !same {
			t.Fatalf("parseMsg(%q) = %+v; encoding/json reads %+v", msg, got, want)
		}
	})
}

// hasDuplicateKeys reports whether the top-level object repeats a key.
func hasDuplicateKeys(msg string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(msg), &m) != nil {
		return false
	}
	var keys []json.RawMessage
	dec := json.NewDecoder(strings.NewReader(msg))
	if _, err := dec.Token(); err != nil {
		return false
	}
	for dec.More() {
		var k string
		if tok, err := dec.Token(); err != nil {
			return false
		} else if k, _ = tok.(string); k == "" && tok != "" {
			return false
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return false
		}
		keys = append(keys, v)
	}
	return len(keys) != len(m)
}

// FuzzMsgRoundTrip: whatever a producer puts in a task's immutable part,
// what appendMsg writes decodeMsg reads back as encoding/json would have
// stored it (invalid UTF-8 becomes U+FFFD, the only change).
func FuzzMsgRoundTrip(f *testing.F) {
	f.Add("k", `{"a":1}`, "trace", "00-1", 2, 3, int64(time.Second), int64(0), "u", int64(1_700_000_000_000_000_000))
	f.Add("k\xff", `  [1, 2] `, "", "new\nline", -1, 0, int64(-5), int64(7), "", int64(0))
	f.Fuzz(func(t *testing.T, kind, args, hk, hv string, prio, maxAttempts int, timeout, retention int64, unique string, enq int64) {
		in := &ebbtype.TaskInfo{ID: "id-1", Kind: kind, Queue: "q", EncodedArgs: []byte(args),
			Priority: ebbtype.Priority(prio), MaxAttempts: maxAttempts, Timeout: time.Duration(timeout),
			Retention: time.Duration(retention), UniqueKey: unique, Headers: map[string]string{hk: hv}}
		if enq != 0 {
			in.EnqueuedAt = time.Unix(0, enq)
		}
		b, err := appendMsg(nil, in)
		if err != nil {
			if json.Valid([]byte(strings.TrimSpace(args))) {
				t.Fatalf("appendMsg refused valid args %q: %v", args, err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("appendMsg wrote invalid JSON %q", b)
		}
		out := &ebbtype.TaskInfo{ID: "id-1", Queue: "q"}
		if err := decodeMsg(out, string(b)); err != nil {
			if kind == "" && strings.Contains(err.Error(), "no kind") {
				return
			}
			t.Fatalf("decodeMsg(appendMsg(%+v)) = %v", in, err)
		}
		var wantArgs json.RawMessage
		if a := strings.TrimSpace(args); a != "" {
			wantArgs = json.RawMessage(a)
		}
		if out.Kind != viaJSON(kind) || out.UniqueKey != viaJSON(unique) || out.Headers[viaJSON(hk)] != viaJSON(hv) ||
			string(out.EncodedArgs) != string(wantArgs) || out.Priority != in.Priority || out.MaxAttempts != in.MaxAttempts ||
			out.Timeout != in.Timeout || out.Retention != in.Retention || !out.EnqueuedAt.Equal(in.EnqueuedAt) {
			t.Fatalf("round trip of %+v gave %+v", in, out)
		}
	})
}

func viaJSON(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

// FuzzDecodeRecord: a stored task record damaged in any way still decodes
// to a record (reported Malformed), never a panic; an undamaged state is
// kept; and what appendRecord writes decodes without a problem.
func FuzzDecodeRecord(f *testing.F) {
	msg := `{"id":"t","k":"k","q":"q","p":2,"m":3,"e":1}`
	f.Add(string(appendRecord(nil, "queued", "1700000000000000001", "u21000", 3, "uk", []byte(msg))))
	f.Add("running 1 5 -2 3 0 1 9 7 3 1 0 34 11\ntokw" + `[{"attempt":1,"at":5,"error":"x"}]{"ok":true}` + msg)
	f.Add("dead 1 5 -2 3 0 0 0 0 0 0 0 99999999999999999999 0\n" + msg)
	f.Add("bogus x\na\nb")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		rec := decodeRecord("q", "t", s)
		if rec.ID != "t" || rec.Queue == "" {
			t.Fatalf("decodeRecord lost the id or queue: %+v", rec)
		}
		if rec.Malformed == "" && !rec.State.Valid() {
			t.Fatalf("record %q accepted with state %q and no problem reported", s, rec.State)
		}
		// Any msg, unique key and state go into a record that splits back
		// into exactly them.
		st := string(rec.State)
		if st == "" || strings.ContainsAny(st, " \n") {
			st = "queued"
		}
		b := appendRecord(nil, st, "1", "-2", 1, s, []byte(s))
		hdr, parts, err := recordParts(string(b))
		if err != nil || hdr[0] != st || parts[2] != s || parts[5] != s {
			t.Fatalf("appendRecord(%q) = %q splits into %q, %q, %v", s, b, hdr, parts, err)
		}
	})
}
