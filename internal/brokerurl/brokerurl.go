// Package brokerurl opens a broker from the URL users give on the command
// line or in EBB_BROKER.
//
// Commands get a Broker: its Client is the public API, which is all that
// the CLI's reading and steering commands use; its Driver is handed, without
// being called, to the machinery that runs on the driver seam (workers, the
// control plane, the benchmarks).
package brokerurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
)

// Default is the embedded broker used when none is configured.
const Default = "sqlite:ebb.db"

// ErrBadURL marks a URL that names no broker ebb knows.
var ErrBadURL = errors.New("bad broker URL")

// Broker is an opened broker.
type Broker struct {
	Client *ebb.Client
	driver ebbdriver.Driver
}

// Driver is the seam for the machinery that runs on it; commands use Client.
func (b *Broker) Driver() ebbdriver.Driver { return b.driver }

// Close closes the broker's connections.
func (b *Broker) Close() error { return b.driver.Close() }

// Open opens the broker named by url (see OpenDriver).
func Open(ctx context.Context, url string, logger *slog.Logger) (*Broker, error) {
	drv, err := OpenDriver(ctx, url)
	if err != nil {
		return nil, err
	}
	client, err := ebb.NewClient(drv, &ebb.ClientConfig{Logger: logger})
	if err != nil {
		drv.Close()
		return nil, err
	}
	return &Broker{Client: client, driver: drv}, nil
}

// OpenDriver opens the driver named by url: redis://[user:pass@]host:port/db,
// rediss://… (TLS), redis+cluster://[user:pass@]host:port,host:port… (a
// Redis Cluster; rediss+cluster:// for TLS),
// postgres://[user:pass@]host:port/dbname[?schema=NAME] (postgresql:// too),
// or sqlite:path/to/file.db (sqlite:///abs/path.db too).
func OpenDriver(ctx context.Context, url string) (ebbdriver.Driver, error) {
	scheme, rest, ok := strings.Cut(url, ":")
	if !ok || rest == "" {
		return nil, fmt.Errorf("%w %q: use redis://host:port/db, postgres://host:5432/dbname or sqlite:path/to/file.db", ErrBadURL, url)
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss", "redis+cluster", "rediss+cluster":
		if err := probeRedis(ctx, url); err != nil {
			return nil, err
		}
		return ebbredis.Open(ctx, url, nil)
	case "postgres", "postgresql":
		return openPostgres(ctx, url)
	case "sqlite", "sqlite3":
		path := strings.TrimPrefix(rest, "//")
		if path == "" {
			return nil, fmt.Errorf("%w %q: the SQLite URL needs a file path, e.g. sqlite:ebb.db", ErrBadURL, url)
		}
		return ebbsqlite.Open(ctx, path, nil)
	default:
		return nil, fmt.Errorf("%w %q: unknown scheme %q; use redis://host:port/db, postgres://host:5432/dbname or sqlite:path/to/file.db", ErrBadURL, url, scheme)
	}
}

// errPermanent marks a broker failure that retrying cannot fix.
var errPermanent = errors.New("permanent")

type permanentError struct{ error }

func (e permanentError) Is(target error) bool { return target == errPermanent }
func (e permanentError) Unwrap() error        { return e.error }

// probeRedis checks that the Redis at url answers, failing within
// milliseconds when nothing listens. go-redis retries a refused dial and
// then the command itself (about 2 s in all with its defaults), which would
// make one-shot commands slow to report a down broker and turn each of
// OpenWait's attempts into a hidden retry loop of its own; the probe uses a
// throwaway client with those retries off. It also turns a URL go-redis
// cannot parse into ErrBadURL, so nobody waits for a typo.
func probeRedis(ctx context.Context, url string) error {
	o, err := ebbredis.ParseURL(url)
	if err != nil {
		// url.Parse quotes the whole URL, password included, in its errors.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		// go-redis quotes pieces of the URL too (an unexpected option
		// after a '?' in the user name holds the password; found by
		// fuzzing).
		msg := err.Error()
		if pass := password(url); pass != "" && sharesRun(msg, pass, 4) {
			// go-redis splits an ambiguous URL its own way and may quote a
			// piece of the password; say what to fix instead.
			msg = "it does not parse; a password holding '/', '?', '#' or '@' must be percent-encoded"
		}
		return fmt.Errorf("%w %q: %s; use redis://[user:password@]host:port/db, rediss://… for TLS, or redis+cluster://host:port,host:port for a cluster", ErrBadURL, Redact(url), msg)
	}
	// A cluster answers when one of its seed nodes does: the client learns
	// the others from it.
	var last error
	for _, addr := range o.Addrs() {
		if last = probeAddr(ctx, o, addr); last == nil || errors.Is(last, errPermanent) {
			return last
		}
	}
	return last
}

func probeAddr(ctx context.Context, o *ebbredis.URLOptions, addr string) error {
	var opts *redis.Options
	if o.Single != nil {
		cp := *o.Single
		opts = &cp
	} else {
		c := o.Cluster
		opts = &redis.Options{Addr: addr, Username: c.Username, Password: c.Password, TLSConfig: c.TLSConfig, DialTimeout: c.DialTimeout}
	}
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.PoolSize = 1
	opts.MinIdleConns = 0
	c := redis.NewClient(opts)
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		if redis.IsAuthError(err) {
			return permanentError{fmt.Errorf("the Redis at %s refused the credentials: %w; fix them in --broker/EBB_BROKER", opts.Addr, err)}
		}
		return fmt.Errorf("cannot reach Redis at %s: %w; is redis-server running? start it or fix --broker/EBB_BROKER", opts.Addr, err)
	}
	return nil
}

// Redact hides the password of a URL for logs and output.
func Redact(url string) string {
	scheme, user, _, host, ok := splitUserinfo(url)
	if !ok {
		return url
	}
	return scheme + "://" + user + ":xxxxx@" + host
}

// sharesRun reports whether s contains any n-byte run of secret.
func sharesRun(s, secret string, n int) bool {
	if len(secret) < n {
		return strings.Contains(s, secret)
	}
	for i := 0; i+n <= len(secret); i++ {
		if strings.Contains(s, secret[i:i+n]) {
			return true
		}
	}
	return false
}

// password is the password url carries, or "".
func password(url string) string {
	_, _, pass, _, _ := splitUserinfo(url)
	return pass
}

// splitUserinfo splits scheme://user:pass@rest; ok is false when url has no
// password.
func splitUserinfo(url string) (scheme, user, pass, rest string, ok bool) {
	scheme, rest, ok = strings.Cut(url, "://")
	if !ok {
		return "", "", "", "", false
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return "", "", "", "", false
	}
	user, pass, ok = strings.Cut(rest[:at], ":")
	return scheme, user, pass, rest[at+1:], ok
}
