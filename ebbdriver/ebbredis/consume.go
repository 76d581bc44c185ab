package ebbredis

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// promoteBatch bounds how many due tasks one Fetch promotes per queue; the
// rest follow on the next Fetch (or PromoteDue).
const promoteBatch = 1000

// Fetch implements ebbdriver.Driver. Queues are claimed from in order, one
// script call each until Limit is reached; queues left over once it is
// reached get one pipelined call that only promotes and reports NextDueAt.
func (d *Driver) Fetch(ctx context.Context, p ebbdriver.FetchParams) (*ebbdriver.FetchResult, error) {
	res := &ebbdriver.FetchResult{}
	if p.LeaseToken == "" && p.Limit > 0 {
		return nil, fmt.Errorf("ebbredis: fetch: empty lease token; every fetch needs a fresh token to fence its completions")
	}
	now := nsString(p.Now)
	leaseUntil := p.Now.Add(p.LeaseDuration)
	leaseNS := nsString(leaseUntil)
	need := max(p.Limit, 0)
	nextDue := math.Inf(1)
	ncalls := 0
	for qi := 0; qi < len(p.Queues); qi++ {
		if need == 0 {
			if err := d.fetchRest(ctx, p.Queues[qi:], now, &nextDue); err != nil {
				return nil, err
			}
			break
		}
		q := p.Queues[qi]
		if err := checkQueue(q); err != nil {
			return nil, fmt.Errorf("ebbredis: fetch: %w", err)
		}
		k := d.keys(q)
		n := min(need, maxPerCall)
		// Each script call of one Fetch claims under a token of its own
		// (the fetch's, then token/1, token/2 …), because a call returns
		// first what was already claimed under its token: a second call on
		// the same queue must not get the first one's claims, while a
		// repeated Fetch, making the same calls, gets each call's back.
		token := p.LeaseToken
		if ncalls > 0 {
			token += "/" + strconv.Itoa(ncalls)
		}
		ncalls++
		vals, err := d.run(ctx, scriptFetch, k.kFetch, now, n, token, p.WorkerID, leaseNS, promoteBatch, k.channel).Slice()
		if err != nil {
			return nil, fmt.Errorf("ebbredis: fetch from queue %q: %w", q, err)
		}
		if (len(vals)-1)%2 != 0 {
			return nil, fmt.Errorf("ebbredis: fetch from queue %q: unexpected script answer of %d values", q, len(vals))
		}
		minScore(vals[0], &nextDue)
		if res.Tasks == nil {
			res.Tasks = make([]*ebbtype.TaskInfo, 0, (len(vals)-1)/2)
		}
		for i := 1; i < len(vals); i += 2 {
			res.Tasks = append(res.Tasks, decodeRecord(q, str(vals[i]), str(vals[i+1])))
		}
		got := (len(vals) - 1) / 2
		need -= got
		if got == n && need > 0 {
			qi-- // this queue may have more than one call could take
		}
	}
	if !math.IsInf(nextDue, 1) {
		res.NextDueAt = fromUS(nextDue)
	}
	return res, nil
}

// fetchRest promotes due tasks of queues Fetch did not claim from and
// reports their earliest due time.
func (d *Driver) fetchRest(ctx context.Context, queues []string, now string, nextDue *float64) error {
	calls := make([]*call, 0, len(queues))
	for _, q := range queues {
		if err := checkQueue(q); err != nil {
			return fmt.Errorf("ebbredis: fetch: %w", err)
		}
		k := d.keys(q)
		calls = append(calls, &call{s: scriptFetch, keys: k.kFetch, args: []any{now, 0, "", "", "0", promoteBatch, k.channel}})
	}
	if err := d.runPipelined(ctx, calls, nil); err != nil {
		return fmt.Errorf("ebbredis: fetch: promote due tasks: %w", err)
	}
	for _, c := range calls {
		vals, err := c.cmd.Slice()
		if err != nil || len(vals) == 0 {
			return fmt.Errorf("ebbredis: fetch: promote due tasks: unexpected script answer %v: %v", vals, err)
		}
		minScore(vals[0], nextDue)
	}
	return nil
}

func minScore(v any, m *float64) {
	s, _ := v.(string)
	if s == "" {
		return
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f < *m {
		*m = f
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// ExtendLeases implements ebbdriver.Driver: one script call per queue, all
// in one pipeline.
func (d *Driver) ExtendLeases(ctx context.Context, p ebbdriver.ExtendLeasesParams) (*ebbdriver.ExtendLeasesResult, error) {
	res := &ebbdriver.ExtendLeasesResult{}
	if len(p.Leases) == 0 {
		return res, nil
	}
	until := nsString(p.Until)
	var calls []*call
	byQueue := map[string]*call{}
	for _, l := range p.Leases {
		if err := checkQueue(l.Queue); err != nil {
			return nil, fmt.Errorf("ebbredis: extend lease of task %q: %w", l.ID, err)
		}
		if l.Token == "" {
			res.Lost = append(res.Lost, l.ID) // see Complete
			continue
		}
		c := byQueue[l.Queue]
		if c == nil || len(c.args) >= 1+2*maxPerCall {
			k := d.keys(l.Queue)
			c = &call{s: scriptExtend, keys: []string{k.leases, k.tasks}, args: []any{until}}
			byQueue[l.Queue] = c
			calls = append(calls, c)
		}
		c.args = append(c.args, l.ID, l.Token)
	}
	if len(calls) == 0 {
		return res, nil
	}
	if err := d.runPipelined(ctx, calls, nil); err != nil {
		return nil, fmt.Errorf("ebbredis: extend %d leases: %w", len(p.Leases), err)
	}
	for _, c := range calls {
		vals, err := c.cmd.Slice()
		if err != nil || len(vals) != 2 {
			return nil, fmt.Errorf("ebbredis: extend leases: unexpected script answer %v: %v", vals, err)
		}
		res.Lost = appendStrings(res.Lost, vals[0])
		res.CancelRequested = appendStrings(res.CancelRequested, vals[1])
	}
	return res, nil
}

func appendStrings(dst []string, v any) []string {
	xs, _ := v.([]any)
	for _, x := range xs {
		dst = append(dst, str(x))
	}
	return dst
}

// Complete implements ebbdriver.Driver: one script call per queue, all in
// one pipeline.
func (d *Driver) Complete(ctx context.Context, completions []ebbdriver.Completion) ([]error, error) {
	errs := make([]error, len(completions))
	if len(completions) == 0 {
		return errs, nil
	}
	type group struct {
		call *call
		idx  []int
		tok  string
	}
	var groups []*group
	byQueue := map[string]*group{}
	var buf []byte
	for i := range completions {
		c := &completions[i]
		if err := checkQueue(c.Queue); err != nil {
			errs[i] = fmt.Errorf("ebbredis: complete task %q: %w", c.ID, err)
			continue
		}
		if c.LeaseToken == "" {
			// Fetch never hands out an empty token, so nobody owns a task
			// with one (and the fence must not match a token cut off).
			errs[i] = fmt.Errorf("ebbredis: complete task %q with an empty lease token: %w", c.ID, ebbtype.ErrLeaseLost)
			continue
		}
		var op, retryAt, data string
		switch c.Outcome {
		case ebbdriver.OutcomeSucceeded:
			op, data = "S", string(c.Result)
		case ebbdriver.OutcomeRetry:
			op = "R"
			if !c.RetryAt.After(c.Now) {
				op = "Q"
			}
			retryAt = nsString(c.RetryAt)
			if c.RetryAt.IsZero() {
				retryAt = nsString(c.Now)
			}
		case ebbdriver.OutcomeDead:
			op = "D"
		case ebbdriver.OutcomeCancelled:
			op = "C"
		case ebbdriver.OutcomeHandBack:
			op = "H"
		default:
			errs[i] = fmt.Errorf("ebbredis: complete task %q: unknown outcome %d; nothing was recorded", c.ID, c.Outcome)
			continue
		}
		if c.Error != nil && (op == "R" || op == "Q" || op == "D" || op == "C") {
			buf = appendErr(buf[:0], c.Error)
			data = string(buf)
		}
		g := byQueue[c.Queue]
		if g == nil || len(g.idx) == maxPerCall {
			k := d.keys(c.Queue)
			args := make([]any, 0, 4+4*min(len(completions)-i, maxPerCall))
			g = &group{call: &call{s: scriptComplete, keys: k.kComplete,
				args: append(args, k.channel, d.chDone, "T", c.LeaseToken)}, tok: c.LeaseToken}
			byQueue[c.Queue] = g
			groups = append(groups, g)
		}
		// Tasks of one fetch share a token: send it once per run.
		if c.LeaseToken != g.tok {
			g.call.args = append(g.call.args, "T", c.LeaseToken)
			g.tok = c.LeaseToken
		}
		g.call.args = append(g.call.args, op, c.ID, nsString(c.Now), data)
		if op == "Q" || op == "R" {
			g.call.args = append(g.call.args, retryAt)
		}
		g.idx = append(g.idx, i)
	}
	if len(groups) == 0 {
		return errs, nil
	}
	calls := make([]*call, len(groups))
	for i, g := range groups {
		calls[i] = g.call
	}
	var err error
	if len(calls) == 1 {
		c := calls[0]
		c.cmd = d.run(ctx, c.s, c.keys, c.args...)
		err = c.cmd.Err()
	} else {
		err = d.runPipelined(ctx, calls, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("ebbredis: complete %d tasks: %w", len(completions), err)
	}
	for _, g := range groups {
		vals, err := g.call.cmd.Slice()
		if err != nil || len(vals) != len(g.idx) {
			return nil, fmt.Errorf("ebbredis: complete: unexpected script answer of %d values for %d tasks: %v", len(vals), len(g.idx), err)
		}
		for j, i := range g.idx {
			switch n, _ := vals[j].(int64); n {
			case 1:
			case 2:
				errs[i] = fmt.Errorf("ebbredis: complete task %q of queue %q: %w", completions[i].ID, completions[i].Queue, ebbtype.ErrTaskNotFound)
			default:
				errs[i] = fmt.Errorf("ebbredis: complete task %q: %w", completions[i].ID, ebbtype.ErrLeaseLost)
			}
		}
	}
	return errs, nil
}

// PromoteDue implements ebbdriver.Driver.
func (d *Driver) PromoteDue(ctx context.Context, queue string, now time.Time, limit int) (int, error) {
	if err := checkQueue(queue); err != nil {
		return 0, fmt.Errorf("ebbredis: promote due tasks: %w", err)
	}
	if limit <= 0 {
		return 0, nil
	}
	k := d.keys(queue)
	n, err := d.run(ctx, scriptPromote, k.kPromote, nsString(now), limit, k.channel).Int()
	if err != nil {
		return 0, fmt.Errorf("ebbredis: promote due tasks of queue %q: %w", queue, err)
	}
	return n, nil
}

// leaseExpiredMsg is the error a rescued task gets, as a JSON string. The
// text is the one every driver writes, so tools can match it.
const leaseExpiredMsg = `"lease expired"`

// RescueExpired implements ebbdriver.Driver.
func (d *Driver) RescueExpired(ctx context.Context, queue string, now time.Time, limit int) (*ebbdriver.RescueResult, error) {
	if err := checkQueue(queue); err != nil {
		return nil, fmt.Errorf("ebbredis: rescue expired leases: %w", err)
	}
	res := &ebbdriver.RescueResult{}
	if limit <= 0 {
		return res, nil
	}
	k := d.keys(queue)
	vals, err := d.run(ctx, scriptRescue, k.kRescue, nsString(now), limit, k.channel, d.chDone, leaseExpiredMsg).Slice()
	if err != nil {
		return nil, fmt.Errorf("ebbredis: rescue expired leases of queue %q: %w", queue, err)
	}
	if len(vals) != 2 {
		return nil, fmt.Errorf("ebbredis: rescue expired leases of queue %q: unexpected script answer %v", queue, vals)
	}
	res.Requeued = appendStrings(nil, vals[0])
	res.Dead = appendStrings(nil, vals[1])
	return res, nil
}
