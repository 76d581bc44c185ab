package ebbredis

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated marks a write the master stored but fewer replicas than
// Config.WaitReplicas confirmed within Config.WaitTimeout: it is not
// acknowledged, and may or may not survive a failover of that master.
var ErrNotReplicated = errors.New("not acknowledged by enough replicas")

// runReplicated runs the calls as runPipelined does, then WAIT on the
// connection each call ran on: WAIT counts the replicas that acknowledged
// every write made so far on its own connection, so it must follow the
// script on the same connection to the same master. In a cluster the calls
// are grouped by the master of their first key (all keys of a call share a
// slot), and each group is pipelined on a dedicated connection to that
// master, ending with its WAIT.
func (d *Driver) runReplicated(ctx context.Context, calls []*call) error {
	for attempt := 0; ; attempt++ {
		moved, err := d.runReplicatedOnce(ctx, calls)
		if err != nil || len(moved) == 0 {
			return err
		}
		// A slot moved (a failover or a resharding the client has not
		// heard of yet): those scripts did not run anywhere. Learn the new
		// slot map and send them to their new master.
		if attempt == 2 {
			return fmt.Errorf("the cluster kept redirecting %d script calls: %w", len(moved), moved[0].cmd.Err())
		}
		if cc, ok := d.rdb.(*redis.ClusterClient); ok {
			cc.ReloadState(ctx)
		}
		calls = moved
	}
}

// runReplicatedOnce returns the calls a MOVED reply refused.
func (d *Driver) runReplicatedOnce(ctx context.Context, calls []*call) ([]*call, error) {
	type node struct {
		c     *redis.Client
		calls []*call
	}
	var nodes []*node
	byAddr := map[string]*node{}
	for _, c := range calls {
		var nc *redis.Client
		switch rdb := d.rdb.(type) {
		case *redis.ClusterClient:
			var err error
			if nc, err = rdb.MasterForKey(ctx, c.keys[0]); err != nil {
				return nil, fmt.Errorf("find the master of %s: %w", c.keys[0], err)
			}
		case *redis.Client:
			nc = rdb
		}
		n := byAddr[nc.Options().Addr]
		if n == nil {
			n = &node{c: nc}
			byAddr[nc.Options().Addr] = n
			nodes = append(nodes, n)
		}
		n.calls = append(n.calls, c)
	}
	var moved []*call
	for _, n := range nodes {
		m, err := d.runOnNode(ctx, n.c, n.calls)
		if err != nil {
			return nil, err
		}
		moved = append(moved, m...)
	}
	return moved, nil
}

func (d *Driver) runOnNode(ctx context.Context, nc *redis.Client, calls []*call) (moved []*call, err error) {
	conn := nc.Conn()
	defer conn.Close()
	var wait *redis.IntCmd
	send := func(eval bool, cs []*call) error {
		_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range cs {
				if eval {
					src, _ := d.code(c.s)
					c.cmd = p.Eval(ctx, src, c.keys, c.args...)
				} else {
					_, hash := d.code(c.s)
					c.cmd = p.EvalSha(ctx, hash, c.keys, c.args...)
				}
			}
			wait = redis.NewIntCmd(ctx, "wait", d.waitReplicas, d.waitTimeout.Milliseconds())
			_ = p.Process(ctx, wait)
			return nil
		})
		return err
	}
	_ = send(false, calls)
	var retry []*call
	for _, c := range calls {
		if isNoScript(c.cmd.Err()) {
			retry = append(retry, c)
		}
	}
	if len(retry) > 0 {
		_ = send(true, retry)
	}
	for _, c := range calls {
		err := c.cmd.Err()
		if _, ok := redis.IsMovedError(err); ok {
			moved = append(moved, c)
			continue
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
	}
	if len(moved) == len(calls) {
		return moved, nil
	}
	n, err := wait.Result()
	if err != nil {
		return nil, fmt.Errorf("WAIT for %d replicas of %s: %w", d.waitReplicas, nc.Options().Addr, err)
	}
	if n < int64(d.waitReplicas) {
		return nil, fmt.Errorf("stored on the master %s, but only %d of %d replicas confirmed it within %s: %w; the tasks may or may not survive a failover (add replicas or lower wait_replicas)",
			nc.Options().Addr, n, d.waitReplicas, d.waitTimeout, ErrNotReplicated)
	}
	return moved, nil
}
