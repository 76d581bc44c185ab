package ebbsqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/ebbq/ebb/ebbtype"
)

// taskCols is the column list every task read selects, in scanTask's order.
const taskCols = `id, queue, kind, args, headers, priority, run_at, attempt, max_attempts,
	timeout, retention, unique_key, unique_ttl, state, enqueued_at, started_at,
	finished_at, worker_id, lease_token, lease_expires_at, cancel_requested, errors, result`

const numTaskCols = 23

// nullStr stores "" as NULL.
func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullBytes stores nil as NULL.
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func encodeHeaders(h map[string]string) (any, error) {
	if len(h) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func encodeErrors(e []ebbtype.AttemptError) (any, error) {
	if len(e) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func encodeAttemptError(e *ebbtype.AttemptError) (string, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// rowScanner is *sql.Rows or *sql.Row.
type rowScanner interface {
	Scan(dest ...any) error
}

// scanTask reads one row of taskCols. Every column is scanned as a raw value
// so a row with a wrong type or corrupt JSON in any column still yields a
// record (with Malformed saying what is wrong) instead of failing the batch.
func scanTask(s rowScanner) (*ebbtype.TaskInfo, error) {
	var raw [numTaskCols]any
	var ptrs [numTaskCols]any
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	if err := s.Scan(ptrs[:]...); err != nil {
		return nil, err
	}
	var dec decoder
	r := &ebbtype.TaskInfo{
		ID:          dec.str("id", raw[0]),
		Queue:       dec.str("queue", raw[1]),
		Kind:        dec.str("kind", raw[2]),
		EncodedArgs: dec.bytes("args", raw[3]),
		Priority:    ebbtype.Priority(dec.int("priority", raw[5])),
		RunAt:       dec.time("run_at", raw[6]),
		Attempt:     int(dec.int("attempt", raw[7])),
		MaxAttempts: int(dec.int("max_attempts", raw[8])),
		Timeout:     time.Duration(dec.int("timeout", raw[9])),
		Retention:   time.Duration(dec.int("retention", raw[10])),
		UniqueKey:   dec.str("unique_key", raw[11]),
		UniqueTTL:   time.Duration(dec.int("unique_ttl", raw[12])),
		State:       ebbtype.State(dec.str("state", raw[13])),
		EnqueuedAt:  dec.time("enqueued_at", raw[14]),
		StartedAt:   dec.time("started_at", raw[15]),
		FinishedAt:  dec.time("finished_at", raw[16]),
		WorkerID:    dec.str("worker_id", raw[17]),
		LeaseToken:  dec.str("lease_token", raw[18]),

		LeaseExpiresAt:  dec.time("lease_expires_at", raw[19]),
		CancelRequested: dec.int("cancel_requested", raw[20]) != 0,
		Result:          dec.bytes("result", raw[22]),
	}
	if h := dec.bytes("headers", raw[4]); h != nil {
		if err := json.Unmarshal(h, &r.Headers); err != nil {
			dec.bad("headers are not a JSON object of strings: %v", err)
		}
	}
	if e := dec.bytes("errors", raw[21]); e != nil {
		if err := json.Unmarshal(e, &r.Errors); err != nil {
			dec.bad("error history is not a JSON array of attempt errors: %v", err)
		}
	}
	if !r.State.Valid() {
		dec.bad("unknown state %q", r.State)
	}
	if len(dec.problems) > 0 {
		r.Malformed = "stored task cannot be decoded: " + strings.Join(dec.problems, "; ")
	}
	return r, nil
}

// decoder converts raw column values, collecting what is wrong.
type decoder struct {
	problems []string
}

func (d *decoder) bad(format string, args ...any) {
	d.problems = append(d.problems, fmt.Sprintf(format, args...))
}

func (d *decoder) str(col string, v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	default:
		d.bad("%s holds %T %v, want text", col, v, v)
		return fmt.Sprint(v)
	}
}

func (d *decoder) bytes(col string, v any) []byte {
	switch v := v.(type) {
	case nil:
		return nil
	case []byte:
		return v
	case string:
		return []byte(v)
	default:
		d.bad("%s holds %T %v, want text or blob", col, v, v)
		return nil
	}
}

func (d *decoder) int(col string, v any) int64 {
	switch v := v.(type) {
	case nil:
		return 0
	case int64:
		return v
	default:
		d.bad("%s holds %T %v, want an integer", col, v, v)
		return 0
	}
}

func (d *decoder) time(col string, v any) time.Time {
	return sqlcommon.FromNS(d.int(col, v))
}

// scanTasks reads all rows of taskCols.
func scanTasks(rows *sql.Rows) ([]*ebbtype.TaskInfo, error) {
	defer rows.Close()
	var out []*ebbtype.TaskInfo
	for rows.Next() {
		r, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
