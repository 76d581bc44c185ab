package ebbredis

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// TestMsgRoundTrip: what appendMsg writes, parseMsg reads back exactly as
// encoding/json does (the fallback), for awkward values too.
func TestMsgRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 123456789)
	for name, r := range map[string]*ebbtype.TaskInfo{
		"minimal": {ID: "x", Kind: "k", Queue: "q", Priority: 2, MaxAttempts: 1, EnqueuedAt: now},
		"full": {ID: "01ABC", Kind: "email.send", Queue: "emails", EncodedArgs: []byte(` { "to" : ["a@b", {"n": -1.5e3}], "s":"x,}]\"y" } `),
			Headers: map[string]string{"trace": "00-1", "": "empty", "quote\"d": "new\nline"}, Priority: 1, MaxAttempts: 7,
			Timeout: time.Second, Retention: 36 * time.Hour, UniqueKey: "u:é\t✓", UniqueTTL: time.Minute, EnqueuedAt: now},
		"scalar args": {ID: "1", Kind: "k", Queue: "q", EncodedArgs: []byte(`42`), Priority: 3, MaxAttempts: 2, EnqueuedAt: now},
		"string args": {ID: "1", Kind: "k", Queue: "q", EncodedArgs: []byte(`"a,b}"`), Priority: 3, MaxAttempts: 2, EnqueuedAt: now},
		"null args":   {ID: "1", Kind: "k", Queue: "q", EncodedArgs: []byte(`null`), Priority: 3, MaxAttempts: 2, EnqueuedAt: now},
		"escapes":     {ID: "i\\d", Kind: "k\u0001\"<>&", Queue: "q/1", Priority: 2, MaxAttempts: 3, EnqueuedAt: now},
		"bad utf8":    {ID: "1", Kind: "k\xff", Queue: "q", Priority: 2, MaxAttempts: 3, EnqueuedAt: now},
	} {
		b, err := appendMsg(nil, r)
		if err != nil {
			t.Fatalf("%s: appendMsg: %v", name, err)
		}
		var got ebbtype.TaskInfo
		if !json.Valid(b) {
			t.Fatalf("%s: appendMsg wrote invalid JSON %s", name, b)
		}
		if !parseMsg(string(b), &got) {
			t.Errorf("%s: parseMsg gave up on %s", name, b)
			continue
		}
		want := *r
		want.EncodedArgs = []byte(strings.TrimSpace(string(r.EncodedArgs)))
		if len(want.EncodedArgs) == 0 {
			want.EncodedArgs = nil
		}
		want.Kind, want.ID, want.UniqueKey = strings.ToValidUTF8(want.Kind, "\ufffd"), strings.ToValidUTF8(want.ID, "\ufffd"), strings.ToValidUTF8(want.UniqueKey, "\ufffd")
		if !reflect.DeepEqual(&want, &got) {
			t.Errorf("%s: parseMsg = %+v, want %+v", name, got, want)
		}
	}
}

// TestDecodeMsgFallback: a msg in other whitespace still reads; one with a
// field appendMsg never writes is refused with a reason, keeping the id.
func TestDecodeMsgFallback(t *testing.T) {
	t.Parallel()
	rec := &ebbtype.TaskInfo{ID: "x", Queue: "q"}
	if err := decodeMsg(rec, ` { "id" : "x", "k" : "k", "p" : 1, "m" : 2, "a" : { "n" : 1 } } `); err != nil || rec.Kind != "k" || string(rec.EncodedArgs) != `{"n":1}` {
		t.Errorf("spaced msg: %v, %+v", err, rec)
	}
	rec = &ebbtype.TaskInfo{ID: "x", Queue: "q"}
	if err := decodeMsg(rec, `{"id":"x","zz":1}`); err == nil || rec.ID != "x" || rec.Queue != "q" {
		t.Errorf("unknown field: %v, %+v", err, rec)
	}
	if err := decodeMsg(rec, `{"id":"x",`); err == nil || !strings.Contains(err.Error(), "not valid") {
		t.Errorf("truncated msg: %v", err)
	}
}

func TestParseMsgGivesUp(t *testing.T) {
	t.Parallel()
	for _, s := range []string{``, `{`, `{"id":"x"`, `{"id":"x",}`, `{"zz":1}`, `{"id":1}`, `{"p":"2"}`, `{"id":"x"} `, `{"a":{"x":1}`, `{"h":{"a":1}}`, `[]`} {
		var m ebbtype.TaskInfo
		if parseMsg(s, &m) {
			t.Errorf("parseMsg(%q) succeeded: %+v", s, m)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "q\"b\\s", "ctl\x00\x1f\n\r\t", "é✓😀", "bad\xffutf8\xc3", strings.Repeat("x", 300)} {
		want, _ := json.Marshal(s)
		var back, wantBack string
		_ = json.Unmarshal(want, &wantBack)
		got := appendJSONString(nil, s)
		if err := json.Unmarshal(got, &back); err != nil || back != wantBack {
			t.Errorf("appendJSONString(%q) = %s, decodes to %q (%v), want %q", s, got, back, err, wantBack)
		}
	}
}

// TestStoredJSON: schedules and decisions stored before the shared types kept
// their JSON fields base64-encoded; they read back as the JSON they were.
func TestStoredJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{`"eyJhIjoxfQ=="`: `{"a":1}`, `{"a":1}`: `{"a":1}`, `null`: ``, ``: ``} {
		if got := string(storedJSON(json.RawMessage(in))); got != want {
			t.Errorf("storedJSON(%s) = %q, want %q", in, got, want)
		}
	}
}
