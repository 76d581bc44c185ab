package target

import (
	"fmt"
	"time"
)

// OpErrors keeps each platform operation's last failure until that
// operation succeeds again, so a failing write is not hidden by reads that
// work: what a Reporter's Status and LastError show. The zero value is
// ready; it is not safe for concurrent use (targets guard it with their
// own mutex).
type OpErrors struct {
	m map[string]OpError
}

// OpError is one operation's last failure.
type OpError struct {
	Op  string
	At  time.Time
	Err error
}

// Fail records err as op's last failure.
func (o *OpErrors) Fail(op string, at time.Time, err error) {
	if o.m == nil {
		o.m = map[string]OpError{}
	}
	o.m[op] = OpError{Op: op, At: at, Err: err}
}

// Clear forgets op's failure: it has just succeeded.
func (o *OpErrors) Clear(op string) { delete(o.m, op) }

// Last is the newest failure still standing (by time, then by name), and
// whether there is one.
func (o *OpErrors) Last() (OpError, bool) {
	var last OpError
	for _, e := range o.m {
		if last.Err == nil || e.At.After(last.At) || (e.At.Equal(last.At) && e.Op < last.Op) {
			last = e
		}
	}
	return last, last.Err != nil
}

// String words the failure for a status line.
func (e OpError) String() string {
	return fmt.Sprintf("%s failing since %s: %v", e.Op, e.At.UTC().Format(time.RFC3339), e.Err)
}
