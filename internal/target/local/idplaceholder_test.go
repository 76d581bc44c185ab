package local

import (
	"slices"
	"testing"
)

func TestInstanceArgs(t *testing.T) {
	t.Parallel()
	if got := instanceArgs([]string{"worker"}, "p-1"); !slices.Equal(got, []string{"worker", "--id", "p-1"}) {
		t.Errorf("without a placeholder: %q", got)
	}
	in := []string{"-m", "celery", "worker", "--hostname", "{id}@%h"}
	if got := instanceArgs(in, "p-1"); !slices.Equal(got, []string{"-m", "celery", "worker", "--hostname", "p-1@%h"}) {
		t.Errorf("with a placeholder: %q", got)
	}
	if in[4] != "{id}@%h" {
		t.Errorf("the command was changed in place: %q", in)
	}
}
