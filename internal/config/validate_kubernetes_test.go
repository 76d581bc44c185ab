package config

import (
	"regexp"
	"strings"
	"testing"
)

// The hand-written name checks accept exactly what the RFC 1123 patterns do.
func TestRFC1123MatchesThePattern(t *testing.T) {
	t.Parallel()
	label := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	subdomain := regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	names := []string{"", "a", "-", ".", "a-", "-a", "a.", ".a", "a-b", "a.b", "ab", "A", "a_b", "a b",
		"web-1", "web.prod", "a..b", "a--b", "é", "0", "9z",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 253), strings.Repeat("a", 254),
		strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 127) + "a"}
	for _, n := range names {
		if got, want := dnsLabel(n), label.MatchString(n); got != want {
			t.Errorf("dnsLabel(%.20q) = %t, the pattern says %t", n, got, want)
		}
		if got, want := dnsSubdomain(n), subdomain.MatchString(n); got != want {
			t.Errorf("dnsSubdomain(%.20q) = %t, the pattern says %t", n, got, want)
		}
	}
}
