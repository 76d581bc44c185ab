package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/internal/maintenance"
)

// elect campaigns for leadership every renew interval until ctx is done. While
// this replica leads, it runs maintenance and one autoscaler loop per pool.
// Leadership is trusted locally only until the last successful renewal's
// start + TTL − one renew interval; past that (broker unreachable) the
// replica steps down on its own, before a successor can be elected. The
// fenced decision log is the real guard: a stale leader cannot record, and so
// cannot apply, a decision.
func (s *Server) elect(ctx context.Context) {
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
		s.metrics.leader.Set(0)
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
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, every)
		l, err := s.ctl.LeaderAttempt(actx, ebbdriver.LeaderParams{Name: LeaderName, ID: s.id, TTL: ttl, Now: start})
		cancel()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.logger.Warn("leader election: broker call failed", "error", err)
			}
			if lead != nil && time.Now().After(trustTill) {
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
				s.metrics.leader.Set(1)
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
func (s *Server) lead(ctx context.Context, wg *sync.WaitGroup) {
	for _, p := range s.pools {
		p.resetHistory()
		wg.Go(func() { p.loop(ctx) })
	}
	wg.Go(func() { s.maintain(ctx) })
	wg.Go(func() { s.beat(ctx) })
}

// maintain runs maintenance for every queue, driven by the queue counts so a
// quiet broker costs almost nothing: rescue only where tasks are in flight,
// promote only where scheduled tasks are due, clean up on the cleanup
// interval.
func (s *Server) maintain(ctx context.Context) {
	m := maintenance.New(maintenance.Config{Driver: s.drv, Logger: s.logger, DeadRetention: s.cfg.Maintenance.DeadRetention})
	rescue := time.NewTicker(s.cfg.Maintenance.RescueInterval)
	defer rescue.Stop()
	lastCleanup := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescue.C:
		}
		// Reuse the autoscaler's reads: maintenance does not need fresher
		// counts than its own interval.
		stats, err := s.stats.get(ctx, s.cfg.Maintenance.RescueInterval)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				s.logger.Warn("maintenance: cannot read queue counts", "error", err)
			}
			continue
		}
		var rescueQs, promoteQs, all []string
		for _, q := range stats {
			all = append(all, q.Name)
			if q.InFlight > 0 {
				rescueQs = append(rescueQs, q.Name)
			}
			if q.DueScheduled > 0 {
				promoteQs = append(promoteQs, q.Name)
			}
		}
		if len(rescueQs) > 0 {
			m.RescueQueues(ctx, rescueQs)
		}
		if len(promoteQs) > 0 {
			m.PromoteQueues(ctx, promoteQs)
		}
		if time.Since(lastCleanup) >= s.cfg.Maintenance.CleanupInterval {
			lastCleanup = time.Now()
			m.CleanupQueues(ctx, all)
		}
	}
}

// termContext lives as long as one term of leadership; stepDown cancels it.
func termContext(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(parent)
}
