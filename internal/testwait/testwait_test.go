package testwait

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	t.Parallel()
	calls := 0
	if err := Until(time.Minute, func() (bool, error) { calls++; return calls == 3, nil }); err != nil || calls != 3 {
		t.Errorf("Until = %v after %d calls, want nil after 3", err, calls)
	}
	boom := errors.New("boom")
	if err := Until(time.Minute, func() (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("Until = %v, want cond's error at once", err)
	}
	start := time.Now()
	err := Until(30*time.Millisecond, func() (bool, error) { return false, nil })
	if err == nil || !strings.Contains(err.Error(), "30ms") {
		t.Errorf("Until = %v, want a timeout naming 30ms", err)
	}
	if took := time.Since(start); took < 30*time.Millisecond || took > 5*time.Second {
		t.Errorf("timed out after %s, want about 30ms", took)
	}
}

func TestEventually(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	go func() {
		time.Sleep(5 * time.Millisecond)
		close(done)
	}()
	Eventually(t, time.Minute, "the channel closed", func() (bool, error) {
		select {
		case <-done:
			return true, nil
		default:
			return false, nil
		}
	})
}

// A condition that fails the test stops the wait at once instead of
// polling until the timeout.
func TestEventuallyStopsWhenTheConditionFails(t *testing.T) {
	t.Parallel()
	ft := &fakeTB{}
	calls := 0
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }() // fakeTB.FailNow panics to stop like runtime.Goexit
		Eventually(ft, time.Minute, "never", func() (bool, error) {
			calls++
			ft.failed = true
			return false, nil
		})
	}()
	<-done
	if calls != 1 || !ft.failNow || time.Since(start) > 10*time.Second {
		t.Errorf("after a failing condition: %d calls, FailNow %v; want 1 call and FailNow", calls, ft.failNow)
	}
}

type fakeTB struct {
	testing.TB
	failed, failNow bool
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Failed() bool { return f.failed }
func (f *fakeTB) FailNow() {
	f.failNow = true
	panic("FailNow")
}
func (f *fakeTB) Fatalf(string, ...any) {
	f.failed = true
	f.FailNow()
}
