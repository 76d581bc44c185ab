package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ebbq/ebb/internal/brokerurl"
)

// runMigrate applies, reverts or shows the schema migrations of a
// postgres:// broker. Brokers migrate at start unless their URL says
// migrate=false, so this is for deploy pipelines that migrate first, for
// reverting, and for looking.
func runMigrate(e *env, args []string) error {
	f := newFlagSet(e, "migrate", "migrate up|down|status [--to VERSION] [flags]",
		"ebb migrate up --broker 'postgres://app@db:5432/app?schema=ebb'")
	to := f.Int("to", -1, "up: apply up to this version (default: all); down: revert down to this version (default: the newest only; 0 drops every ebb table and task)")
	asJSON := f.Bool("json", false, "print JSON")
	pos, err := f.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one of up, down or status (see --help)")
	}
	action := pos[0]
	target := *to
	switch action {
	case "up":
		target = max(target, 0)
	case "status":
		if target >= 0 {
			return usagef("migrate status takes no --to")
		}
	case "down":
		if target < 0 {
			// The newest applied version, minus one: one step back.
			_, st, err := migrate(*f.broker, "status", 0)
			if err != nil {
				return err
			}
			target = 0
			for _, m := range st {
				if m.Applied {
					target = m.Version - 1
				}
			}
		}
	default:
		return usagef("unknown action %q: use up, down or status", action)
	}
	changed, st, err := migrate(*f.broker, action, target)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, st)
	}
	switch {
	case action == "up" && len(changed) == 0:
		fmt.Fprintln(e.stderr, "schema is up to date")
	case action == "down" && len(changed) == 0:
		fmt.Fprintln(e.stderr, "nothing to revert")
	case len(changed) > 0:
		fmt.Fprintf(e.stderr, "%s: versions %v\n", map[string]string{"up": "applied", "down": "reverted"}[action], changed)
	}
	return printRows(e, false, st, 0, "VERSION\tNAME\tAPPLIED", func(m brokerurl.Migration) string {
		at := "no"
		if m.Applied {
			at = m.AppliedAt
		}
		return strconv.Itoa(m.Version) + "\t" + m.Name + "\t" + at
	})
}

func migrate(url, action string, target int) ([]int, []brokerurl.Migration, error) {
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	changed, st, err := brokerurl.Migrate(ctx, url, action, target)
	if errors.Is(err, brokerurl.ErrNoMigrations) {
		return nil, nil, usagef("%v", err)
	}
	return changed, st, err
}
