// Package sqlcommon holds what the SQL drivers (ebbsqlite, ebbpostgres)
// store and order alike: times as Unix nanoseconds, the fetch order, the
// queue list of a fetch.
package sqlcommon

import (
	"cmp"
	"slices"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// NS stores a time as Unix nanoseconds; the zero time is 0. Every driver
// hands back exactly the times it was given, which SQL timestamp types
// (microseconds) would round.
func NS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromNS is NS's inverse.
func FromNS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

// FetchOrder is the order a fetch hands out a queue's tasks in: priority,
// then run-at, then id. RETURNING yields rows in update order, so the
// drivers sort what a claim returns with it.
func FetchOrder(a, b *ebbtype.TaskInfo) int {
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c
	}
	if c := a.RunAt.Compare(b.RunAt); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// Dedup drops repeated queue names, keeping the first of each in order.
func Dedup(qs []string) []string {
	if len(qs) <= 1 {
		return qs
	}
	out := make([]string, 0, len(qs))
	for _, q := range qs {
		if !slices.Contains(out, q) {
			out = append(out, q)
		}
	}
	return out
}
