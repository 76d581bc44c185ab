package ebbredis

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
)

// TestMsgRoundTrip: what appendMsg writes, parseMsg reads back exactly as
// encoding/json does (the fallback), for awkward values too.
func TestMsgRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 123456789)
	for name, r := range map[string]*ebbdriver.TaskRecord{
		"minimal": {ID: "x", Kind: "k", Queue: "q", Priority: 2, MaxAttempts: 1, EnqueuedAt: now},
		"full": {ID: "01ABC", Kind: "email.send", Queue: "emails", Args: []byte(` { "to" : ["a@b", {"n": -1.5e3}], "s":"x,}]\"y" } `),
			Headers: map[string]string{"trace": "00-1", "": "empty", "quote\"d": "new\nline"}, Priority: 1, MaxAttempts: 7,
			Timeout: time.Second, Retention: 36 * time.Hour, UniqueKey: "u:é\t✓", UniqueTTL: time.Minute, EnqueuedAt: now},
		"scalar args": {ID: "1", Kind: "k", Queue: "q", Args: []byte(`42`), Priority: 3, MaxAttempts: 2, EnqueuedAt: now},
		"string args": {ID: "1", Kind: "k", Queue: "q", Args: []byte(`"a,b}"`), Priority: 3, MaxAttempts: 2, EnqueuedAt: now},
		"null args":   {ID: "1", Kind: "k", Queue: "q", Args: []byte(`null`), Priority: 3, MaxAttempts: 2, EnqueuedAt: now},
		"escapes":     {ID: "i\\d", Kind: "k\u0001\"<>&", Queue: "q/1", Priority: 2, MaxAttempts: 3, EnqueuedAt: now},
		"bad utf8":    {ID: "1", Kind: "k\xff", Queue: "q", Priority: 2, MaxAttempts: 3, EnqueuedAt: now},
	} {
		b, err := appendMsg(nil, r)
		if err != nil {
			t.Fatalf("%s: appendMsg: %v", name, err)
		}
		var want, got msgJSON
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("%s: appendMsg wrote invalid JSON %s: %v", name, b, err)
		}
		if !parseMsg(string(b), &got) {
			t.Errorf("%s: parseMsg gave up on %s", name, b)
			continue
		}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: parseMsg = %+v, encoding/json = %+v", name, got, want)
		}
		if string(got.Args) != strings.TrimSpace(string(r.Args)) {
			t.Errorf("%s: Args = %q, want them verbatim %q", name, got.Args, r.Args)
		}
	}
}

func TestParseMsgGivesUp(t *testing.T) {
	t.Parallel()
	for _, s := range []string{``, `{`, `{"id":"x"`, `{"id":"x",}`, `{"zz":1}`, `{"id":1}`, `{"p":"2"}`, `{"id":"x"} `, `{"a":{"x":1}`, `{"h":{"a":1}}`, `[]`} {
		var m msgJSON
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

func FuzzParseMsg(f *testing.F) {
	f.Add(`{"id":"x","k":"k","q":"q","a":{"n":[1,"]"]},"h":{"a":"b"},"p":2,"m":3,"e":1}`)
	f.Fuzz(func(t *testing.T, s string) {
		var got, want msgJSON
		if !parseMsg(s, &got) {
			return
		}
		// Where encoding/json reads the input too, both agree. (parseMsg is
		// lenient inside Args: it only tracks nesting and strings there.)
		if json.Unmarshal([]byte(s), &want) != nil {
			return
		}
		if string(got.Args) != string(want.Args) {
			want.Args = got.Args // RawMessage compares bytes; both are the same value
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parseMsg(%q) = %+v, encoding/json = %+v", s, got, want)
		}
	})
}
