package ebbredis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

var _ ebbdriver.Control = (*Driver)(nil)

// The control plane's keys (see the layout in doc.go) share the hash tag
// {ctl}, so each of its scripts runs on one Redis Cluster slot.
func (d *Driver) leaderKey(name string) string { return d.prefix + ":leader:{ctl}:" + name }
func (d *Driver) decisionsKey(part string) string {
	return d.prefix + ":decisions:{ctl}:" + part
}

const luaLeaderAttempt = `-- LeaderAttempt: elect or renew the leader of one name.
-- KEYS[1] -> P:leader:{ctl}:<name>
-- ARGV[1] -> candidate id
-- ARGV[2] -> now, µs
-- ARGV[3] -> now + TTL, µs
-- Returns {leader id, term, expiry µs}.
` + luaLib + `
local f = redis.call("HMGET", KEYS[1], "id", "term", "exp")
local term = tonumber(f[2]) or 0
-- Held while now < exp: at the expiry it is over.
if not f[1] or (tonumber(f[3]) or 0) <= tonumber(ARGV[2]) then
  term = term + 1
  redis.call("HSET", KEYS[1], "id", ARGV[1], "term", itoa(term), "exp", ARGV[3])
  return {ARGV[1], term, ARGV[3]}
end
if f[1] == ARGV[1] then
  redis.call("HSET", KEYS[1], "exp", ARGV[3])
  return {ARGV[1], term, ARGV[3]}
end
return {f[1], term, f[3]}
`

const luaLeaderResign = `-- LeaderResign: end the caller's leadership (the term is kept).
-- KEYS[1] -> P:leader:{ctl}:<name>
-- ARGV[1] -> id of the resigning leader
` + luaLib + `
if redis.call("HGET", KEYS[1], "id") == ARGV[1] then
  redis.call("HSET", KEYS[1], "exp", "0")
end
return 0
`

const luaDecisionAppend = `-- DecisionAppend: store a decision if its author still leads in its term.
-- KEYS[1] -> P:leader:{ctl}:<leader name>
-- KEYS[2] -> P:decisions:{ctl}:seq
-- KEYS[3] -> P:decisions:{ctl}:data
-- KEYS[4] -> P:decisions:{ctl}:all
-- KEYS[5] -> P:decisions:{ctl}:pool:<pool>
-- ARGV[1] -> leader id
-- ARGV[2] -> term
-- ARGV[3] -> time of the decision, µs
-- ARGV[4] -> decision JSON
-- ARGV[5] -> how many decisions a pool keeps
-- Returns the new Seq, or 0 when the author does not lead.
` + luaLib + `
local f = redis.call("HMGET", KEYS[1], "id", "term", "exp")
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] or (tonumber(f[3]) or 0) <= tonumber(ARGV[3]) then
  return 0
end
local seq = redis.call("INCR", KEYS[2])
local s = tostring(seq)
redis.call("HSET", KEYS[3], s, ARGV[4])
redis.call("ZADD", KEYS[4], s, s)
redis.call("ZADD", KEYS[5], s, s)
local over = redis.call("ZCARD", KEYS[5]) - tonumber(ARGV[5])
if over > 0 then
  local old = redis.call("ZRANGE", KEYS[5], 0, over - 1)
  bulk("ZREM", KEYS[5], old)
  bulk("ZREM", KEYS[4], old)
  bulk("HDEL", KEYS[3], old)
end
return seq
`

const luaDecisionList = `-- DecisionList: the newest decisions, newest first.
-- KEYS[1] -> P:decisions:{ctl}:all or P:decisions:{ctl}:pool:<pool>
-- KEYS[2] -> P:decisions:{ctl}:data
-- ARGV[1] -> how many (-1: all)
-- Returns {seq, JSON, seq, JSON, …}.
` + luaLib + `
local seqs = redis.call("ZREVRANGE", KEYS[1], 0, tonumber(ARGV[1]))
if #seqs == 0 then return {} end
local data = redis.call("HMGET", KEYS[2], unpack(seqs))
local out = {}
for i, s in ipairs(seqs) do
  if data[i] then
    out[#out + 1] = s
    out[#out + 1] = data[i]
  end
end
return out
`

var (
	scriptLeaderAttempt  = newScript(luaLeaderAttempt)
	scriptLeaderResign   = newScript(luaLeaderResign)
	scriptDecisionAppend = newScript(luaDecisionAppend)
	scriptDecisionList   = newScript(luaDecisionList)
)

// LeaderAttempt implements ebbdriver.Control.
func (d *Driver) LeaderAttempt(ctx context.Context, p ebbdriver.LeaderParams) (*ebbtype.Leadership, error) {
	if p.Name == "" || p.ID == "" || p.TTL <= 0 {
		return nil, fmt.Errorf("ebbredis: leader attempt: name %q, id %q, TTL %s: need a name, an id and a positive TTL", p.Name, p.ID, p.TTL)
	}
	vals, err := d.run(ctx, scriptLeaderAttempt, []string{d.leaderKey(p.Name)},
		p.ID, usString(p.Now), usString(p.Now.Add(p.TTL))).Slice()
	if err != nil {
		return nil, fmt.Errorf("ebbredis: leader attempt for %q: %w", p.Name, err)
	}
	if len(vals) != 3 {
		return nil, fmt.Errorf("ebbredis: leader attempt for %q: unexpected script answer %v", p.Name, vals)
	}
	term, _ := vals[1].(int64)
	exp, _ := strconv.ParseInt(str(vals[2]), 10, 64)
	return &ebbtype.Leadership{LeaderID: str(vals[0]), Term: term, ExpiresAt: fromUS(float64(exp))}, nil
}

// LeaderResign implements ebbdriver.Control.
func (d *Driver) LeaderResign(ctx context.Context, name, id string) error {
	if err := d.run(ctx, scriptLeaderResign, []string{d.leaderKey(name)}, id).Err(); err != nil {
		return fmt.Errorf("ebbredis: leader resign from %q: %w", name, err)
	}
	return nil
}

// LeaderGet implements ebbdriver.Control. One HMGET reads the hash
// atomically, so no script is needed to see a consistent leader and expiry.
func (d *Driver) LeaderGet(ctx context.Context, name string, now time.Time) (*ebbtype.Leadership, error) {
	vals, err := d.rdb.HMGet(ctx, d.leaderKey(name), "id", "term", "exp").Result()
	if err != nil {
		return nil, fmt.Errorf("ebbredis: read the leader of %q: %w", name, err)
	}
	id := str(vals[0])
	term, _ := strconv.ParseInt(str(vals[1]), 10, 64)
	exp, _ := strconv.ParseInt(str(vals[2]), 10, 64)
	// Held while now < exp, as in luaLeaderAttempt; a resigned leader has
	// exp 0.
	if id == "" || exp <= now.UnixMicro() {
		return nil, nil
	}
	return &ebbtype.Leadership{LeaderID: id, Term: term, ExpiresAt: fromUS(float64(exp))}, nil
}

// DecisionAppend implements ebbdriver.Control.
func (d *Driver) DecisionAppend(ctx context.Context, leaderName string, dec *ebbtype.Decision) error {
	if dec == nil || dec.Pool == "" {
		return errors.New("ebbredis: decision append: need a decision with a pool")
	}
	js, err := json.Marshal(dec)
	if err != nil {
		return fmt.Errorf("ebbredis: decision append: encode: %w", err)
	}
	seq, err := d.run(ctx, scriptDecisionAppend,
		[]string{d.leaderKey(leaderName), d.decisionsKey("seq"), d.decisionsKey("data"), d.decisionsKey("all"), d.decisionsKey("pool:" + dec.Pool)},
		dec.LeaderID, dec.Term, usString(dec.At), string(js), ebbdriver.DecisionLogMax).Int64()
	if err != nil {
		return fmt.Errorf("ebbredis: decision append for pool %q: %w", dec.Pool, err)
	}
	if seq == 0 {
		return fmt.Errorf("ebbredis: decision append: %q does not lead %q in term %d at %s: %w",
			dec.LeaderID, leaderName, dec.Term, dec.At.UTC().Format("2006-01-02T15:04:05.000Z"), ebbdriver.ErrNotLeader)
	}
	dec.Seq = seq
	return nil
}

// DecisionList implements ebbdriver.Control. limit ≤ 0 lists all kept.
func (d *Driver) DecisionList(ctx context.Context, pool string, limit int) ([]ebbtype.Decision, error) {
	index := d.decisionsKey("all")
	if pool != "" {
		index = d.decisionsKey("pool:" + pool)
	}
	vals, err := d.run(ctx, scriptDecisionList, []string{index, d.decisionsKey("data")}, max(limit, 0)-1).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("ebbredis: list decisions: %w", err)
	}
	out := make([]ebbtype.Decision, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		var dec ebbtype.Decision
		if err := json.Unmarshal([]byte(vals[i+1]), &dec); err != nil {
			return nil, fmt.Errorf("ebbredis: list decisions: decision %s is not valid JSON: %w", vals[i], err)
		}
		dec.Seq, _ = strconv.ParseInt(vals[i], 10, 64)
		dec.Inputs = storedJSON(dec.Inputs)
		out = append(out, dec)
	}
	return out, nil
}
