// Package testwait is the one way ebb's tests wait for something to become
// true: a condition polled on a short, growing interval with a deadline, so
// tests neither sleep a guessed amount nor spin.
package testwait

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Poll bounds: a first look after a millisecond catches what is about to
// happen without a visible delay; the cap keeps a slow wait from hammering a
// broker.
const (
	pollMin = time.Millisecond
	pollMax = 50 * time.Millisecond
)

// Eventually polls cond until it reports true, and fails the test if that
// takes longer than timeout or cond returns an error. what names the awaited
// state for the failure message ("task succeeded"). A cond that reports a
// problem through t (t.Errorf) ends the wait too: polling on would only
// repeat it. It must be called from the test's goroutine (it may call
// t.Fatalf).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	failedBefore := t.Failed()
	err := Until(timeout, func() (bool, error) {
		ok, err := cond()
		if !ok && err == nil && !failedBefore && t.Failed() {
			return false, errFailed
		}
		return ok, err
	})
	switch {
	case errors.Is(err, errFailed):
		t.FailNow()
	case err != nil:
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

var errFailed = errors.New("the condition failed the test")

// Until is Eventually for code that cannot fail a test itself (a goroutine,
// a benchmark's setup): it returns cond's error, or an error when timeout
// passes first.
func Until(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	wait := pollMin
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("still not the case after %s", timeout)
		}
		time.Sleep(min(wait, left))
		wait = min(2*wait, pollMax)
	}
}
