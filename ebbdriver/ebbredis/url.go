package ebbredis

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// URLOptions is what a broker URL says: how to reach Redis (one server, or a
// cluster) and ebb's own settings carried as query parameters.
//
// Forms:
//
//	redis://[user:password@]host:port/db[?options]
//	rediss://…                                   (TLS)
//	redis+cluster://[user:password@]host:port[,host:port…][?options]
//	rediss+cluster://…                           (a cluster over TLS)
//
// A cluster URL names one or more seed nodes (the client learns the others
// from them) and no database: a cluster has only database 0. Options are
// go-redis's (dial_timeout, pool_size, …) plus ebb's:
//
//	wait_replicas=N   Config.WaitReplicas
//	wait_timeout=D    Config.WaitTimeout (a Go duration, e.g. 500ms)
type URLOptions struct {
	// Single is set for redis:// and rediss:// URLs.
	Single *redis.Options
	// Cluster is set for the +cluster forms.
	Cluster *redis.ClusterOptions
	// WaitReplicas and WaitTimeout are the wait_replicas and wait_timeout
	// parameters (zero when absent).
	WaitReplicas int
	WaitTimeout  time.Duration
}

// Addrs are the addresses the URL names.
func (o *URLOptions) Addrs() []string {
	if o.Cluster != nil {
		return o.Cluster.Addrs
	}
	return []string{o.Single.Addr}
}

// NewClient returns a client for the URL's Redis.
func (o *URLOptions) NewClient() redis.UniversalClient {
	if o.Cluster != nil {
		return redis.NewClusterClient(o.Cluster)
	}
	return redis.NewClient(o.Single)
}

// ParseURL parses a broker URL (see URLOptions for its forms). Its errors
// never show the URL's password.
func ParseURL(raw string) (*URLOptions, error) {
	o, err := parseURL(raw)
	if err != nil {
		return nil, scrub(err, raw)
	}
	return o, nil
}

// scrub turns err into one whose text does not contain raw's password:
// net/url and go-redis quote pieces of the URL in their errors.
func scrub(err error, raw string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil {
		if pass, ok := u.User.Password(); ok && pass != "" {
			msg = strings.ReplaceAll(msg, pass, "xxxxx")
		}
	}
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pass, ok := strings.Cut(rest[:at], ":"); ok && pass != "" {
				msg = strings.ReplaceAll(msg, pass, "xxxxx")
			}
		}
	}
	return errors.New(msg)
}

func parseURL(raw string) (*URLOptions, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("not a URL of the form scheme://host:port")
	}
	o := &URLOptions{}
	rest, err := o.takeEbbParams(rest)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		opts, err := redis.ParseURL(scheme + "://" + rest)
		if err != nil {
			return nil, err
		}
		o.Single = opts
	case "redis+cluster", "rediss+cluster":
		base := strings.TrimSuffix(strings.ToLower(scheme), "+cluster")
		// redis+cluster://u:p@h1,h2/?x becomes go-redis's
		// redis://u:p@h1/?addr=h2&x.
		authority, tail, _ := strings.Cut(rest, "/")
		if i := strings.IndexAny(authority, "?"); i >= 0 {
			authority, tail = authority[:i], authority[i:]
		}
		path, query, _ := strings.Cut(tail, "?")
		if path != "" && path != "0" {
			return nil, fmt.Errorf("a cluster URL names no database (a Redis Cluster has only database 0), got /%s", path)
		}
		userinfo := ""
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			userinfo, authority = authority[:at+1], authority[at+1:]
		}
		hosts := strings.Split(authority, ",")
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, fmt.Errorf("cluster URL options: %w", err)
		}
		for _, h := range hosts[1:] {
			if h == "" {
				return nil, errors.New("an empty address in the cluster URL's host list")
			}
			q.Add("addr", h)
		}
		opts, err := redis.ParseClusterURL(base + "://" + userinfo + hosts[0] + "?" + q.Encode())
		if err != nil {
			return nil, err
		}
		o.Cluster = opts
	default:
		return nil, fmt.Errorf("unknown scheme %q", scheme)
	}
	return o, nil
}

// takeEbbParams removes wait_replicas and wait_timeout from the query of
// rest (what follows "scheme://"), which go-redis would refuse as unknown.
func (o *URLOptions) takeEbbParams(rest string) (string, error) {
	head, query, ok := strings.Cut(rest, "?")
	if !ok {
		return rest, nil
	}
	var kept []string
	for _, kv := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "wait_replicas":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return "", fmt.Errorf("wait_replicas=%q: want a number of replicas, 0 or more", v)
			}
			o.WaitReplicas = n
		case "wait_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return "", fmt.Errorf("wait_timeout=%q: want a positive duration such as 500ms", v)
			}
			o.WaitTimeout = d
		default:
			kept = append(kept, kv)
		}
	}
	if len(kept) == 0 {
		return head, nil
	}
	return head + "?" + strings.Join(kept, "&"), nil
}
