package ebbtype_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ebbq/ebb/ebbtype"
)

// TestTaskInfoJSONOfDamagedRecords: whatever a driver decoded from a
// damaged record, the task still encodes for the API and the dashboard:
// args or a result that are not JSON become strings, empty ones null.
func TestTaskInfoJSONOfDamagedRecords(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args, result json.RawMessage
		want         []string
	}{
		"empty, not nil":  {json.RawMessage{}, json.RawMessage{}, []string{`"args":null`}},
		"not JSON":        {json.RawMessage(`{"a":`), json.RawMessage(`nope`), []string{`"args":"{\"a\":"`, `"result":"nope"`}},
		"valid":           {json.RawMessage(`{"a":1}`), json.RawMessage(`2`), []string{`"args":{"a":1}`, `"result":2`}},
		"nil args and no": {nil, nil, []string{`"args":null`}},
	} {
		b, err := json.Marshal(&ebbtype.TaskInfo{ID: "t", EncodedArgs: tc.args, Result: tc.result})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: %s lacks %s", name, b, w)
			}
		}
	}
}
