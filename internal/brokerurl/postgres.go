package brokerurl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
)

// openPostgres opens a postgres:// broker. Errors the driver could not
// parse the URL for are ErrBadURL; those the server gave that waiting
// cannot fix are permanent, so OpenWait reports them at once.
func openPostgres(ctx context.Context, url string) (ebbdriver.Driver, error) {
	d, err := ebbpostgres.Open(ctx, url, nil)
	if err == nil {
		return d, nil
	}
	if errors.Is(err, ebbpostgres.ErrBadURL) {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	if ebbpostgres.IsPermanent(err) {
		return nil, permanentError{err}
	}
	return nil, err
}

// Migration is one schema migration's state, for `ebb migrate status`.
type Migration struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Applied bool   `json:"applied"`
	// AppliedAt is RFC 3339, empty when not applied.
	AppliedAt string `json:"applied_at,omitempty"`
}

// ErrNoMigrations means the broker has no schema to migrate.
var ErrNoMigrations = errors.New("only postgres:// brokers have migrations: SQLite migrates its file when opened and Redis has no schema")

// Migrate runs action ("up", "down" or "status") on the schema of the
// postgres broker at url. up applies migrations up to version target (0:
// all), down reverts those above target (0: all, dropping ebb's tables and
// every task in them). It returns the versions applied or reverted, and
// the state of every migration after the action.
func Migrate(ctx context.Context, url, action string, target int) (changed []int, state []Migration, err error) {
	scheme, _, _ := strings.Cut(url, ":")
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
	default:
		return nil, nil, fmt.Errorf("%w (broker %s)", ErrNoMigrations, Redact(url))
	}
	m, closePool, err := ebbpostgres.OpenMigrator(ctx, url)
	if err != nil {
		if errors.Is(err, ebbpostgres.ErrBadURL) {
			return nil, nil, fmt.Errorf("%w: %w", ErrBadURL, err)
		}
		return nil, nil, err
	}
	defer closePool()
	switch action {
	case "up":
		changed, err = m.Up(ctx, target)
	case "down":
		changed, err = m.Down(ctx, target)
	case "status":
	default:
		return nil, nil, fmt.Errorf("unknown migrate action %q: use up, down or status", action)
	}
	if err != nil {
		return changed, nil, fmt.Errorf("migrate %s on schema %s: %w", action, m.Schema(), err)
	}
	st, err := m.Status(ctx)
	if err != nil {
		return changed, nil, fmt.Errorf("reading the migration state of schema %s: %w", m.Schema(), err)
	}
	for _, s := range st {
		mg := Migration{Version: s.Version, Name: s.Name, Applied: s.Applied}
		if s.Applied {
			mg.AppliedAt = s.AppliedAt.UTC().Format("2006-01-02T15:04:05Z07:00")
		}
		state = append(state, mg)
	}
	return changed, state, nil
}
