package brokerurl

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzOpenRedisURL: a Redis URL of any shape, its server unreachable, is
// refused quickly with an error that names the problem and never shows the
// password, which broker URLs carry and which logs must not.
func FuzzOpenRedisURL(f *testing.F) {
	f.Add("redis", "user", "s3cretpass", "127.0.0.1:1", "/0?dial_timeout=1ms")
	f.Add("rediss", "", "s3cretpass", "[::1]:1", "/15")
	f.Add("redis", "u", "s3cretpass", "127.0.0.1:notaport", "/x")
	f.Add("REDIS", "u:v", "s3cretpass", "", "?protocol=9")
	f.Add("redis+cluster", "u", "s3cretpass", "127.0.0.1:1,127.0.0.1:2", "/?wait_replicas=1")
	f.Add("rediss+cluster", "", "s3cretpass", "127.0.0.1:1,,x", "/3?wait_timeout=-1s")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing is dialled: only parsing and the first answer matter
	f.Fuzz(func(t *testing.T, scheme, user, pass, host, rest string) {
		if len(pass) < 6 || strings.ContainsAny(pass, "@/:?#%[] \\") || strings.Contains(user+host+rest, pass) ||
			!strings.ContainsAny(pass, "ghijklmnopqrstuvwyzGHIJKLMNOPQRSTUVWYZ") {
			// The password must be one recognisable run to check for it,
			// with a letter no quoting escape (\x10, \u00e9) can spell.
			return
		}
		if !slices.ContainsFunc([]string{"redis", "rediss", "redis+cluster", "rediss+cluster"}, func(s string) bool { return strings.EqualFold(s, scheme) }) {
			return // other schemes name files (sqlite) or other brokers
		}
		url := scheme + "://" + user + ":" + pass + "@" + host + rest
		drv, err := OpenDriver(ctx, url)
		if err == nil {
			drv.Close()
			t.Fatalf("OpenDriver(%q) with a cancelled context succeeded", url)
		}
		if strings.Contains(err.Error(), pass) {
			t.Fatalf("OpenDriver(%q): the error shows the password: %v", url, err)
		}
		if !errors.Is(err, ErrBadURL) && !strings.Contains(err.Error(), "Redis") {
			t.Fatalf("OpenDriver(%q) = %v: neither a bad URL nor a Redis that cannot be reached", url, err)
		}
		if !strings.Contains(Redact(url), "xxxxx") {
			t.Fatalf("Redact(%q) = %q kept the password", url, Redact(url))
		}
	})
}
