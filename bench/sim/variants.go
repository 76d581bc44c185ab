package sim

import (
	"time"

	"github.com/ebbq/ebb/internal/controlplane/policy"
)

// Variant is a what-if for ebb: other settings, or a mechanism the server
// does not have today. Variants explain where ebb's cost goes; they are not
// what ebb does.
type Variant struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	What string `json:"what"`

	policy func(base policy.Policy, startup time.Duration) policy.Policy
	opts   ebbOptions
}

// Variants are the columns of the analysis table.
var Variants = []Variant{
	{
		Key: "default", Name: "server today",
		What:   "the server's defaults: packing fetch, delays derived from the measured start-up",
		policy: func(p policy.Policy, _ time.Duration) policy.Policy { return p },
		opts:   ebbOptions{Pack: true},
	},
	{
		Key: "no-pack", Name: "without packing",
		What:   "derived delays, but the first worker to reach the broker wins each fetch (`WorkerConfig.PackDelay` -1)",
		policy: func(p policy.Policy, _ time.Duration) policy.Policy { return p },
	},
	{
		Key: "fixed", Name: "fixed delays",
		What:   "packing fetch, with the former fixed delays (scale-down delay 30 s, idle before zero 1 min)",
		policy: EbbFixed,
		opts:   ebbOptions{Pack: true},
	},
	{
		Key: "before", Name: "before packing",
		What:   "neither: the server before packing and derived delays",
		policy: EbbFixed,
	},
}

// RunVariants runs every Variant of ebb on a trace and returns one Result
// per variant, in order.
func RunVariants(tr Trace, startup time.Duration, seed uint64, b Bound) []Result {
	base := EbbDefaultPolicy(max(b.Peak, 1), tr.Concurrency, tr.MaxWait)
	var out []Result
	for _, v := range Variants {
		row := ebbRow(v.Key, v.Name, v.policy(base, startup), true, v.opts, startup)
		out = append(out, runOne(tr, startup, seed, row, b, false))
	}
	return out
}

// OnePerWorker is a trace with one slot per worker: the control that
// separates the cost of placing tasks on workers from the policy's timing.
func OnePerWorker(tr Trace) Trace {
	tr.Name += "-c1"
	tr.Title += ", one task per worker"
	tr.Concurrency = 1
	return tr
}
