package ebbredis

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// The sets TaskList walks in each queue, in this order.
const (
	bucketRunning = iota // P:{q}:leases
	bucketReady1         // P:{q}:ready:1 … 3
	bucketReady2
	bucketReady3
	bucketWaiting // P:{q}:scheduled: Scheduled and Retrying
	bucketDead    // P:{q}:dead
	bucketDone    // P:{q}:done: Succeeded and Cancelled
	numBuckets
)

func (k *queueKeys) bucket(b int) string {
	switch b {
	case bucketRunning:
		return k.leases
	case bucketReady1, bucketReady2, bucketReady3:
		return k.ready[b-bucketReady1]
	case bucketWaiting:
		return k.scheduled
	case bucketDead:
		return k.dead
	default:
		return k.done
	}
}

// bucketHolds reports whether a task in state st is listed in bucket b;
// st "" (no filter) is in every bucket.
func bucketHolds(b int, st ebbtype.State) bool {
	switch st {
	case "":
		return true
	case ebbtype.StateRunning:
		return b == bucketRunning
	case ebbtype.StateQueued:
		return b >= bucketReady1 && b <= bucketReady3
	case ebbtype.StateScheduled, ebbtype.StateRetrying:
		return b == bucketWaiting
	case ebbtype.StateDead:
		return b == bucketDead
	default: // succeeded, cancelled
		return b == bucketDone
	}
}

// listChunkMax bounds the hashes read in one pipeline. Chunks start at the
// number of matches still wanted (an unfiltered page reads exactly the page)
// and grow while a filter rejects what they bring.
const listChunkMax = 1000

// listPos is where a listing stands: the next member of a queue's bucket, by
// rank from the newest (ZREVRANGE offset).
type listPos struct {
	queue  string
	bucket int
	offset int64
}

// The cursor is "<bucket>.<offset>.<queue>" in unpadded URL-safe base64, so
// it travels in URLs as is and any queue name fits.
func (p listPos) cursor() string {
	s := strconv.Itoa(p.bucket) + "." + strconv.FormatInt(p.offset, 10) + "." + p.queue
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func parseListCursor(c string) (listPos, error) {
	bad := fmt.Errorf("ebbredis: list tasks: cursor %q was not made by this driver's TaskList", c)
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return listPos{}, bad
	}
	parts := strings.SplitN(string(raw), ".", 3)
	if len(parts) != 3 || parts[2] == "" {
		return listPos{}, bad
	}
	b, err1 := strconv.Atoi(parts[0])
	off, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || b < 0 || b >= numBuckets || off < 0 {
		return listPos{}, bad
	}
	return listPos{queue: parts[2], bucket: b, offset: off}, nil
}

// listSegment is one non-empty bucket of one queue still to walk.
type listSegment struct {
	keys   *queueKeys
	bucket int
	size   int64 // ZCARD when the call started
	start  int64 // offset to start from
}

// TaskList implements ebbdriver.Driver. It walks queues in name order and,
// within a queue, the sets of running, queued (by priority), scheduled and
// retrying, dead, then finished tasks, each from its highest score (the
// newest) down by ZREVRANGE, reading the records of a chunk of ids with one
// HMGET and filtering in Go. The state filter skips sets that cannot
// hold a match; every id taken from a set counts towards ScanLimit, also
// when its record is gone (deleted meanwhile).
//
// The cursor holds the queue, the set and an offset in it. Offsets shift
// when tasks enter or leave a set before the cursor's position, so under
// concurrent changes a task that did not move may be listed twice or
// skipped; with nothing changing, paging lists each task once.
func (d *Driver) TaskList(ctx context.Context, p ebbdriver.TaskListParams) (*ebbdriver.TaskListResult, error) {
	if err := checkListState(p.State); err != nil {
		return nil, err
	}
	limit, budget := p.Limit, p.ScanLimit
	if limit <= 0 {
		limit = ebbdriver.TaskListLimitDefault
	}
	if budget <= 0 {
		budget = ebbdriver.TaskListScanDefault
	}
	var pos listPos
	if p.Cursor != "" {
		var err error
		if pos, err = parseListCursor(p.Cursor); err != nil {
			return nil, err
		}
		if p.Queue != "" && pos.queue != p.Queue {
			return nil, fmt.Errorf("ebbredis: list tasks: the cursor belongs to a listing of queue %q, not %q", pos.queue, p.Queue)
		}
	}
	segs, err := d.listSegments(ctx, p, pos)
	if err != nil {
		return nil, err
	}

	res := &ebbdriver.TaskListResult{Tasks: []*ebbtype.TaskInfo{}}
	step := min(int64(limit), listChunkMax)
	si, off := 0, int64(0)
	if len(segs) > 0 {
		off = segs[0].start
	}
walk:
	for si < len(segs) {
		s := segs[si]
		if off >= s.size {
			si++
			if si < len(segs) {
				off = segs[si].start
			}
			continue
		}
		if budget == 0 {
			break
		}
		n := min(int64(budget), s.size-off, step)
		key := s.keys.bucket(s.bucket)
		ids, err := d.rdb.ZRevRange(ctx, key, off, off+n-1).Result()
		if err != nil {
			return nil, fmt.Errorf("ebbredis: list tasks of queue %q: %w", s.keys.name, err)
		}
		if len(ids) == 0 { // the set shrank meanwhile
			off = s.size
			continue
		}
		vals, err := d.rdb.HMGet(ctx, s.keys.tasks, ids...).Result()
		if err != nil {
			return nil, fmt.Errorf("ebbredis: list tasks of queue %q: %w", s.keys.name, err)
		}
		for i, v := range vals {
			budget--
			res.Scanned++
			off++
			if rs, ok := v.(string); ok {
				rec := decodeRecord(s.keys.name, ids[i], rs)
				if (p.State == "" || rec.State == p.State) && (p.Kind == "" || rec.Kind == p.Kind) {
					res.Tasks = append(res.Tasks, rec)
					if len(res.Tasks) == limit {
						break walk
					}
				}
			}
		}
		if int64(len(ids)) < n { // the set shrank meanwhile
			off = s.size
		}
		step = min(step*4, listChunkMax)
	}
	// Point the cursor at what is left, if anything.
	for si < len(segs) && off >= segs[si].size {
		si++
		if si < len(segs) {
			off = segs[si].start
		}
	}
	if si < len(segs) {
		res.Cursor = listPos{queue: segs[si].keys.name, bucket: segs[si].bucket, offset: off}.cursor()
	}
	return res, nil
}

// listSegments returns the non-empty sets a listing from pos visits, with
// their sizes, in walking order.
func (d *Driver) listSegments(ctx context.Context, p ebbdriver.TaskListParams, pos listPos) ([]listSegment, error) {
	var queues []string
	if p.Queue != "" {
		queues = []string{p.Queue}
	} else {
		// A fresh read, as lookups by id do: a dashboard should see a
		// queue created a moment ago by anyone.
		d.qset.mu.RLock()
		gen := d.qset.gen
		d.qset.mu.RUnlock()
		read := time.Now()
		names, err := d.rdb.SMembers(ctx, d.queuesKey()).Result()
		if err != nil {
			return nil, fmt.Errorf("ebbredis: list tasks: list queues: %w", err)
		}
		d.storeQueueSet(names, read, gen)
		queues = slices.DeleteFunc(names, func(q string) bool { return q == "" })
		slices.Sort(queues)
	}
	if pos.queue != "" {
		i, _ := slices.BinarySearch(queues, pos.queue)
		queues = queues[i:]
	}
	type pending struct {
		seg  listSegment
		card *redis.IntCmd
	}
	var all []pending
	pipe := d.rdb.Pipeline()
	for _, q := range queues {
		k := d.keys(q)
		for b := range numBuckets {
			if !bucketHolds(b, p.State) {
				continue
			}
			s := listSegment{keys: k, bucket: b}
			if q == pos.queue {
				if b < pos.bucket {
					continue
				}
				if b == pos.bucket {
					s.start = pos.offset
				}
			}
			all = append(all, pending{seg: s, card: pipe.ZCard(ctx, k.bucket(b))})
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("ebbredis: list tasks: count tasks: %w", err)
	}
	segs := make([]listSegment, 0, len(all))
	for _, a := range all {
		a.seg.size = a.card.Val()
		if a.seg.start < a.seg.size {
			segs = append(segs, a.seg)
		}
	}
	return segs, nil
}

func checkListState(st ebbtype.State) error {
	if st == "" || st.Valid() {
		return nil
	}
	return fmt.Errorf("ebbredis: list tasks: unknown state %q; use one of %v", st, ebbtype.States())
}

// TaskRetry implements ebbdriver.Driver.
func (d *Driver) TaskRetry(ctx context.Context, id string, now time.Time) (ebbtype.State, error) {
	k, _, err := d.findTask(ctx, id)
	if err != nil {
		return "", err
	}
	vals, err := d.run(ctx, scriptRetry,
		[]string{k.tasks, k.ready[0], k.ready[1], k.ready[2], k.scheduled, k.dead, k.uniq},
		id, nsString(now), k.channel).Slice()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("ebbredis: retry task %q: %w", id, ebbtype.ErrTaskNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("ebbredis: retry task %q: %w", id, err)
	}
	if len(vals) != 2 {
		return "", fmt.Errorf("ebbredis: retry task %q: unexpected script answer %v", id, vals)
	}
	st := ebbtype.State(str(vals[1]))
	if n, _ := vals[0].(int64); n != 1 {
		return "", fmt.Errorf("ebbredis: retry task %q: %w: task is %s", id, ebbtype.ErrTaskState, stateName(st))
	}
	return st, nil
}

// TaskDelete implements ebbdriver.Driver.
func (d *Driver) TaskDelete(ctx context.Context, id string) error {
	k, _, err := d.findTask(ctx, id)
	if err != nil {
		return err
	}
	st, err := d.run(ctx, scriptDelete,
		[]string{k.tasks, k.ready[0], k.ready[1], k.ready[2], k.scheduled, k.dead, k.done, k.waiters, k.uniq, k.uniqexp},
		id, d.chDone).Text()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("ebbredis: delete task %q: %w", id, ebbtype.ErrTaskNotFound)
	}
	if err != nil {
		return fmt.Errorf("ebbredis: delete task %q: %w", id, err)
	}
	if ebbtype.State(st) == ebbtype.StateRunning {
		return fmt.Errorf("ebbredis: delete task %q: %w: task is running; cancel it first", id, ebbtype.ErrTaskState)
	}
	return nil
}

func stateName(st ebbtype.State) string {
	if st == "" {
		return "in no known state"
	}
	return string(st)
}
