package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// netns is a network namespace of the test's own, joined to the host by a
// veth pair: the host end has hostAddr, the namespace's end nsAddr, both in
// a /30 that exists only between the two. Cutting the host end's link is a
// partition: packets vanish (no reset, no unreachable), as when a switch or
// a security group drops them.
type netns struct {
	t                *testing.T
	name, hostVeth   string
	hostAddr, nsAddr string
}

var netnsSeq atomic.Int32

// newNetns makes a namespace and its veth pair, removed when t ends. It
// needs root (CI runs `bash scripts/test` as root) and iproute2; it fails,
// never skips.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("the partition tests need iproute2's ip (scripts/test installs it): %v", err)
	}
	n := int(netnsSeq.Add(1))
	// The pid keeps two test binaries (go test runs packages at once) from
	// reusing a name; 10.213.n.0/30 is private to this pair.
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, n)
	ns := &netns{t: t, name: "ebbt-" + id, hostVeth: fmt.Sprintf("ebh%d", os.Getpid()%100000*100+n),
		hostAddr: fmt.Sprintf("10.213.%d.1", (os.Getpid()+n)%250+1), nsAddr: ""}
	ns.nsAddr = strings.TrimSuffix(ns.hostAddr, ".1") + ".2"
	peer := "ebn" + strings.TrimPrefix(ns.hostVeth, "ebh")
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", ns.hostVeth).Run()
		_ = exec.Command("ip", "netns", "del", ns.name).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", ns.name},
		{"link", "add", ns.hostVeth, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", ns.name},
		{"addr", "add", ns.hostAddr + "/30", "dev", ns.hostVeth},
		{"link", "set", ns.hostVeth, "up"},
		{"-n", ns.name, "addr", "add", ns.nsAddr + "/30", "dev", peer},
		{"-n", ns.name, "link", "set", peer, "up"},
		{"-n", ns.name, "link", "set", "lo", "up"},
	} {
		ns.ip(args...)
	}
	return ns
}

func (ns *netns) ip(args ...string) {
	ns.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		ns.t.Fatalf("ip %s: %v: %s (the partition tests need root)", strings.Join(args, " "), err, out)
	}
}

// cut drops every packet between the namespace and the host.
func (ns *netns) cut() { ns.t.Helper(); ns.ip("link", "set", ns.hostVeth, "down") }

// heal restores the link.
func (ns *netns) heal() { ns.t.Helper(); ns.ip("link", "set", ns.hostVeth, "up") }

// startEbb runs `ebb args...` inside the namespace.
func (ns *netns) startEbb(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startCommand(t, "", name, nil, append([]string{"ip", "netns", "exec", ns.name, ebbBin}, args...)...)
}
