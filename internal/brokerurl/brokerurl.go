// Package brokerurl opens a broker driver from the URL users give on the
// command line or in EBB_BROKER.
package brokerurl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
)

// Default is the embedded broker used when none is configured.
const Default = "sqlite:ebb.db"

// ErrBadURL marks a URL that names no broker ebb knows.
var ErrBadURL = errors.New("bad broker URL")

// Open opens the broker named by url: redis://[user:pass@]host:port/db,
// rediss://… (TLS), or sqlite:path/to/file.db (sqlite:///abs/path.db too).
func Open(ctx context.Context, url string) (ebbdriver.Driver, error) {
	scheme, rest, ok := strings.Cut(url, ":")
	if !ok || rest == "" {
		return nil, fmt.Errorf("%w %q: use redis://host:port/db or sqlite:path/to/file.db", ErrBadURL, url)
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		return ebbredis.Open(ctx, url, nil)
	case "sqlite", "sqlite3":
		path := strings.TrimPrefix(rest, "//")
		if path == "" {
			return nil, fmt.Errorf("%w %q: the SQLite URL needs a file path, e.g. sqlite:ebb.db", ErrBadURL, url)
		}
		return ebbsqlite.Open(ctx, path, nil)
	default:
		return nil, fmt.Errorf("%w %q: unknown scheme %q; use redis://host:port/db or sqlite:path/to/file.db", ErrBadURL, url, scheme)
	}
}

// Redact hides the password of a URL for logs and output.
func Redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	userinfo := rest[:at]
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + rest[at+1:]
	}
	return url
}
