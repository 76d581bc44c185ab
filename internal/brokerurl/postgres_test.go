package brokerurl

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb/internal/testpg"
	"github.com/ebbq/ebb/internal/testwait"
)

// TestPostgresOpenWait: nothing listening is waited for (and the final
// error says why, without the password); refused credentials, a missing
// database and a schema that migrate=false finds missing are reported at
// once, each saying what to do; a bad URL is ErrBadURL.
func TestPostgresOpenWait(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("postgres://ebb:s3cret@%s/app?sslmode=disable", l.Addr())
	l.Close()
	logs, logger := testwait.NewLog()
	_, err = OpenWait(t.Context(), closed, 700*time.Millisecond, logger)
	if err == nil || !strings.Contains(err.Error(), "still unreachable") || !strings.Contains(err.Error(), "is PostgreSQL running") ||
		strings.Contains(err.Error(), "s3cret") {
		t.Errorf("closed port: %v; want it to wait, then say PostgreSQL is unreachable, without the password", err)
	}
	if n := len(logs.Lines("level=WARN")); n < 2 {
		t.Errorf("closed port: %d retries logged, want at least 2", n)
	}

	s := testpg.StartServer(t)
	for _, c := range []struct{ name, url, want string }{
		{"wrong password", strings.Replace(s.URL(), testpg.Password, "wrong", 1), "refused the credentials"},
		{"missing database", strings.Replace(s.URL(), "/postgres?", "/nosuchdb?", 1), "createdb"},
		{"missing schema", s.URL() + "&schema=never_migrated&migrate=false", "ebb migrate up"},
	} {
		logs, logger := testwait.NewLog()
		start := time.Now()
		_, err := OpenWait(t.Context(), c.url, time.Minute, logger)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want it to say %q", c.name, err, c.want)
		}
		if took := time.Since(start); took > 10*time.Second || len(logs.Lines("level=WARN")) > 0 {
			t.Errorf("%s: retried for %s; want an answer at once", c.name, took)
		}
	}
	if _, err := OpenWait(t.Context(), "postgres://127.0.0.1:5432/x?migrate=perhaps", time.Minute, nil); !errors.Is(err, ErrBadURL) {
		t.Errorf("migrate=perhaps: %v, want ErrBadURL", err)
	}
	d, err := OpenWait(t.Context(), s.URL()+"&schema=app_ebb", time.Minute, nil)
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	d.Close()
}

// TestMigrate runs `ebb migrate`'s actions and refuses brokers without
// migrations.
func TestMigrate(t *testing.T) {
	t.Parallel()
	url := testpg.SchemaURL(t)
	ctx := t.Context()
	if _, st, err := Migrate(ctx, url, "status", 0); err != nil || len(st) == 0 || st[0].Applied {
		t.Fatalf("status of a new schema = %v, %v; want versions, none applied", st, err)
	}
	up, st, err := Migrate(ctx, url, "up", 0)
	if err != nil || len(up) != len(st) || !st[len(st)-1].Applied || st[0].AppliedAt == "" {
		t.Fatalf("up = %v, %v, %v; want every version applied", up, st, err)
	}
	down, st, err := Migrate(ctx, url, "down", 0)
	if err != nil || len(down) != len(up) || st[0].Applied {
		t.Fatalf("down to 0 = %v, %v, %v; want every version reverted", down, st, err)
	}
	if _, _, err := Migrate(ctx, "sqlite:ebb.db", "up", 0); !errors.Is(err, ErrNoMigrations) {
		t.Errorf("migrate on SQLite: %v, want ErrNoMigrations", err)
	}
	if _, _, err := Migrate(ctx, url, "sideways", 0); err == nil {
		t.Error("migrate sideways succeeded")
	}
}
