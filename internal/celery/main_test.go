package celery

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: the
// monitor's subscriber and its delayed shutdowns must end with Run and Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
