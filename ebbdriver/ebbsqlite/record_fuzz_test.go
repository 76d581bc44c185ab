package ebbsqlite

import (
	"encoding/json"
	"testing"
)

// rawRow plays *sql.Row with the values a damaged or hand-edited database
// could hold in each column.
type rawRow []any

func (r rawRow) Scan(dest ...any) error {
	for i, d := range dest {
		*(d.(*any)) = r[i%len(r)]
	}
	return nil
}

// FuzzScanTask: a row with any text, blob or integer in any column decodes
// to a record that keeps its id, says what is wrong in Malformed, and still
// encodes as JSON for the API and the dashboard.
func FuzzScanTask(f *testing.F) {
	f.Add("t1", "q", "k", []byte(`{"a":1}`), []byte(`{"h":"v"}`), "queued", []byte(`[{"attempt":1,"error":"x"}]`), []byte(`"ok"`), int64(5), uint32(0))
	f.Add("t1", "q", "", []byte(`{"a":`), []byte(`[1]`), "bogus", []byte(`{`), []byte(`nope`), int64(-1), uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, id, queue, kind string, args, headers []byte, state string, errs, result []byte, n int64, kinds uint32) {
		texts := []any{id, queue, kind, args, headers}
		row := make(rawRow, numTaskCols)
		for i := range row {
			// Each column gets, by one bit of kinds, its usual type or an
			// integer or text where the other is expected.
			odd := kinds&(1<<(i%32)) != 0
			switch {
			case i < len(texts) && !odd:
				row[i] = texts[i]
			case i < len(texts):
				row[i] = n
			case !odd:
				row[i] = n
			default:
				row[i] = string(result)
			}
		}
		row[13], row[21], row[22] = state, errs, result
		if kinds&(1<<31) != 0 {
			row[13] = n
		}
		rec, err := scanTask(row)
		if err != nil {
			t.Fatalf("scanTask: %v", err)
		}
		if rec == nil {
			t.Fatal("scanTask returned no record")
		}
		if rec.Malformed == "" && !rec.State.Valid() {
			t.Fatalf("state %v accepted without a problem reported", row[13])
		}
		if _, err := json.Marshal(rec); err != nil {
			t.Fatalf("the record does not encode as JSON: %v (%+v)", err, rec)
		}
	})
}
