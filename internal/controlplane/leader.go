package controlplane

import (
	"context"
	"sync"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/maintenance"
)

// elect campaigns for leadership every renew interval until ctx is done. While
// this replica leads, it runs maintenance and one autoscaler loop per pool.
// Leadership is trusted locally only until the last successful renewal's
// start + TTL − one renew interval; past that (broker unreachable) the
// replica steps down on its own, before a successor can be elected. The
// fenced decision log is the real guard: a stale leader cannot record, and so
// cannot apply, a decision.
func (s *Replica) elect(ctx context.Context) {
	ttl, every := s.cfg.Leader.TTL, s.cfg.Leader.RenewInterval
	var (
		lead      context.CancelFunc
		leadDone  sync.WaitGroup
		trustTill time.Time
	)
	stepDown := func(why string) {
		if lead == nil {
			return
		}
		lead()
		leadDone.Wait()
		lead = nil
		s.leading.Store(false)
		s.logger.Info("stepped down as leader", "reason", why)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			stepDown("shutting down")
			return
		case <-timer.C:
		}
		start := s.clock.Now()
		actx, cancel := context.WithTimeout(ctx, every)
		l, err := s.drv.LeaderAttempt(actx, ebbdriver.LeaderParams{Name: LeaderName, ID: s.id, TTL: ttl, Now: start})
		cancel()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.logger.Warn("leader election: broker call failed", "error", err)
			}
			if lead != nil && s.clock.Now().After(trustTill) {
				stepDown("could not renew leadership in time")
			}
		case l.LeaderID == s.id:
			s.leader.Store(l)
			trustTill = start.Add(ttl - every)
			if lead == nil || l.Term != s.term.Load() {
				stepDown("new term")
				var lctx context.Context
				lctx, lead = termContext(ctx)
				s.term.Store(l.Term)
				s.leading.Store(true)
				s.logger.Info("elected leader", "term", l.Term)
				s.lead(lctx, &leadDone)
			}
		default:
			s.leader.Store(l)
			stepDown("another replica leads")
		}
		timer.Reset(every)
	}
}

// lead starts what only the leader runs.
func (s *Replica) lead(ctx context.Context, wg *sync.WaitGroup) {
	for _, p := range s.pools {
		p.resetHistory()
		wg.Go(func() { p.loop(ctx) })
	}
	wg.Go(func() { s.maintain(ctx) })
	wg.Go(func() { s.beat(ctx) })
}

// maintain runs the same maintenance as every worker, for every queue, on
// the counts the scaling loops already read.
func (s *Replica) maintain(ctx context.Context) {
	every := s.cfg.Maintenance.RescueInterval
	maintenance.New(maintenance.Config{
		Driver: s.drv, Logger: s.logger, Clock: s.clock,
		RescueInterval: every, CleanupInterval: s.cfg.Maintenance.CleanupInterval,
		DeadRetention: s.cfg.Maintenance.DeadRetention,
		// Maintenance does not need fresher counts than its own interval.
		Stats: func(ctx context.Context) ([]ebbtype.QueueStats, error) { return s.stats.get(ctx, every) },
	}).Run(ctx)
}

// termContext lives as long as one term of leadership; stepDown cancels it.
func termContext(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(parent)
}
