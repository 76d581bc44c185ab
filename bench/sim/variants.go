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
		What:   "the server's defaults and mechanisms",
		policy: func(p policy.Policy, _ time.Duration) policy.Policy { return p },
	},
	{
		Key: "tuned", Name: "tuned to the start-up",
		What:   "settings only: scale-down delay 0, idle before zero = start-up",
		policy: EbbTuned,
	},
	{
		Key: "pack", Name: "packing fetch",
		What:   "proposal (workers): the fullest worker with a free slot fetches first, so the least-loaded ones empty and can be drained",
		policy: func(p policy.Policy, _ time.Duration) policy.Policy { return p },
		opts:   ebbOptions{Pack: true},
	},
	{
		Key: "tuned-pack", Name: "tuned + packing fetch",
		What:   "both of the above",
		policy: EbbTuned,
		opts:   ebbOptions{Pack: true},
	},
}

// RunVariants runs every Variant of ebb on a trace and returns one Result
// per variant, in order.
func RunVariants(tr Trace, startup time.Duration, seed uint64, b Bound) []Result {
	base := EbbDefaultPolicy(max(b.Peak, 1), tr.Concurrency, tr.MaxWait)
	var out []Result
	for _, v := range Variants {
		row := ebbRow(v.Key, v.Name, v.policy(base, startup), true, v.opts)
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
