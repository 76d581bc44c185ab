package ebbredis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

var _ ebbdriver.Schedules = (*Driver)(nil)

// A schedule's definition is JSON that only Go reads, while its firing state
// sits in fields of its own that the scripts compare and set. The state could
// not live inside the JSON: rewriting it in Lua means cjson, which prints
// numbers with 14 significant digits (Every and Timeout are nanoseconds) and
// re-escapes strings, so a MarkFired would corrupt the definition.
func (d *Driver) schedulesKey() string { return d.prefix + ":schedules:{ctl}:names" }
func (d *Driver) scheduleKey(name string) string {
	return d.prefix + ":schedules:{ctl}:s:" + name
}

// luaNSLater compares two times given as decimal nanosecond strings. Lua
// numbers are doubles, exact only to 2^53 ns (104 days after 1970), so it
// compares the digits.
const luaNSLater = `
local function later(a, b)
  local na, nb = string.byte(a, 1) == 45, string.byte(b, 1) == 45
  if na ~= nb then return nb end
  if #a ~= #b then return (#a > #b) ~= na end
  if a == b then return false end
  return (a > b) ~= na
end
`

const luaScheduleUpsert = `-- ScheduleUpsert: store a definition, keeping the firing state.
-- KEYS[1] -> P:schedules:{ctl}:names
-- KEYS[2] -> P:schedules:{ctl}:s:<name>
-- ARGV[1] -> name
-- ARGV[2] -> definition JSON
-- ARGV[3] -> created at, ns (kept from the first version)
-- ARGV[4] -> "1" when the record carries Paused
-- ARGV[5] -> last tick the record carries, ns ("0": none)
-- ARGV[6] -> its task id
` + luaLib + luaNSLater + `
redis.call("ZADD", KEYS[1], 0, ARGV[1])
redis.call("HSET", KEYS[2], "def", ARGV[2])
redis.call("HSETNX", KEYS[2], "created", ARGV[3])
if ARGV[4] == "1" then
  redis.call("HSET", KEYS[2], "paused", "1")
end
if later(ARGV[5], redis.call("HGET", KEYS[2], "tick") or "0") then
  redis.call("HSET", KEYS[2], "tick", ARGV[5], "task", ARGV[6])
end
return 0
`

const luaScheduleDelete = `-- ScheduleDelete: remove a schedule with its firing state.
-- KEYS[1] -> P:schedules:{ctl}:names
-- KEYS[2] -> P:schedules:{ctl}:s:<name>
-- ARGV[1] -> name
-- Returns 1, or 0 when there was no such schedule.
` + luaLib + `
redis.call("ZREM", KEYS[1], ARGV[1])
return redis.call("DEL", KEYS[2])
`

const luaSchedulePause = `-- ScheduleSetPaused: pause or resume an existing schedule.
-- KEYS[1] -> P:schedules:{ctl}:s:<name>
-- ARGV[1] -> "1" to pause, "0" to resume
-- Returns 1, or 0 when there is no such schedule.
` + luaLib + `
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
redis.call("HSET", KEYS[1], "paused", ARGV[1])
return 1
`

const luaScheduleMarkFired = `-- ScheduleMarkFired: record a tick if it is later than the stored one.
-- KEYS[1] -> P:schedules:{ctl}:s:<name>
-- ARGV[1] -> tick, ns
-- ARGV[2] -> task id
-- Returns 1 when recorded, 0 when the tick is not later, -1 when there is
-- no such schedule.
` + luaLib + luaNSLater + `
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
if not later(ARGV[1], redis.call("HGET", KEYS[1], "tick") or "0") then return 0 end
redis.call("HSET", KEYS[1], "tick", ARGV[1], "task", ARGV[2])
return 1
`

// ScheduleUpsert implements ebbdriver.Schedules.
func (d *Driver) ScheduleUpsert(ctx context.Context, s *ebbtype.Schedule) error {
	if s == nil || s.Name == "" {
		return errors.New("ebbredis: schedule upsert: need a schedule with a name")
	}
	// The stored JSON is the definition only: its firing state and
	// CreatedAt would go stale as the fields the scripts own move on.
	def := *s
	def.Paused, def.LastTickAt, def.LastTaskID, def.CreatedAt = false, time.Time{}, "", time.Time{}
	js, err := json.Marshal(&def)
	if err != nil {
		return fmt.Errorf("ebbredis: schedule upsert %q: encode: %w", s.Name, err)
	}
	paused := ""
	if s.Paused {
		paused = "1"
	}
	if err := d.run(ctx, scriptScheduleUpsert, []string{d.schedulesKey(), d.scheduleKey(s.Name)},
		s.Name, string(js), nsString(s.CreatedAt), paused, nsString(s.LastTickAt), s.LastTaskID).Err(); err != nil {
		return fmt.Errorf("ebbredis: schedule upsert %q: %w", s.Name, err)
	}
	return nil
}

// ScheduleGet implements ebbdriver.Schedules.
func (d *Driver) ScheduleGet(ctx context.Context, name string) (*ebbtype.Schedule, error) {
	vals, err := d.rdb.HMGet(ctx, d.scheduleKey(name), "def", "created", "paused", "tick", "task").Result()
	if err != nil {
		return nil, fmt.Errorf("ebbredis: schedule get %q: %w", name, err)
	}
	if len(vals) != 5 || vals[0] == nil {
		return nil, fmt.Errorf("ebbredis: schedule %q: %w", name, ebbtype.ErrScheduleNotFound)
	}
	return decodeSchedule(name, vals)
}

// ScheduleList implements ebbdriver.Schedules: the names, then each
// schedule's hash, pipelined. Not one script: a script would have to build
// the schedules' key names, which it may not (every key a script touches is
// declared). A schedule deleted between the two round trips is left out;
// one added in between shows up on the next call.
func (d *Driver) ScheduleList(ctx context.Context) ([]ebbtype.Schedule, error) {
	names, err := d.rdb.ZRange(ctx, d.schedulesKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("ebbredis: schedule list: %w", err)
	}
	out := make([]ebbtype.Schedule, 0, len(names))
	if len(names) == 0 {
		return out, nil
	}
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(names))
	for i, name := range names {
		cmds[i] = pipe.HMGet(ctx, d.scheduleKey(name), "def", "created", "paused", "tick", "task")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("ebbredis: schedule list: %w", err)
	}
	for i, name := range names {
		f := cmds[i].Val()
		if len(f) != 5 || f[0] == nil {
			continue // deleted meanwhile
		}
		s, err := decodeSchedule(name, f)
		if err != nil {
			out = append(out, ebbtype.Schedule{Name: name, Malformed: err.Error()})
			continue
		}
		out = append(out, *s)
	}
	return out, nil
}

// decodeSchedule builds a record from its fields def, created, paused, tick
// and task (nil or false when absent).
func decodeSchedule(name string, f []any) (*ebbtype.Schedule, error) {
	var s ebbtype.Schedule
	if err := json.Unmarshal([]byte(str(f[0])), &s); err != nil {
		return nil, fmt.Errorf("ebbredis: schedule %q: stored definition is not valid JSON: %w", name, err)
	}
	s.Name = name
	s.Args = storedJSON(s.Args)
	// UTC throughout, as the SQLite driver returns times, rather than the
	// local zone of parseNS mixed with the caller's zones kept by the JSON.
	s.CreatedAt = parseNS(str(f[1])).UTC()
	s.Paused = str(f[2]) == "1"
	s.LastTickAt = parseNS(str(f[3])).UTC()
	s.LastTaskID = str(f[4])
	s.At, s.UpdatedAt = s.At.UTC(), s.UpdatedAt.UTC()
	return &s, nil
}

// ScheduleDelete implements ebbdriver.Schedules.
func (d *Driver) ScheduleDelete(ctx context.Context, name string) error {
	n, err := d.run(ctx, scriptScheduleDelete, []string{d.schedulesKey(), d.scheduleKey(name)}, name).Int64()
	if err != nil {
		return fmt.Errorf("ebbredis: schedule delete %q: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("ebbredis: schedule delete: %q: %w", name, ebbtype.ErrScheduleNotFound)
	}
	return nil
}

// ScheduleSetPaused implements ebbdriver.Schedules.
func (d *Driver) ScheduleSetPaused(ctx context.Context, name string, paused bool) error {
	flag := "0"
	if paused {
		flag = "1"
	}
	n, err := d.run(ctx, scriptSchedulePause, []string{d.scheduleKey(name)}, flag).Int64()
	if err != nil {
		return fmt.Errorf("ebbredis: schedule set paused %q: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("ebbredis: schedule set paused: %q: %w", name, ebbtype.ErrScheduleNotFound)
	}
	return nil
}

// ScheduleMarkFired implements ebbdriver.Schedules. now is not stored: the
// record has no field for it, and UpdatedAt dates the definition, not its
// ticks.
func (d *Driver) ScheduleMarkFired(ctx context.Context, name string, tick time.Time, taskID string, now time.Time) (bool, error) {
	n, err := d.run(ctx, scriptScheduleMarkFired, []string{d.scheduleKey(name)}, nsString(tick), taskID).Int64()
	if err != nil {
		return false, fmt.Errorf("ebbredis: schedule mark fired %q: %w", name, err)
	}
	if n < 0 {
		return false, fmt.Errorf("ebbredis: schedule mark fired: %q: %w", name, ebbtype.ErrScheduleNotFound)
	}
	return n == 1, nil
}
