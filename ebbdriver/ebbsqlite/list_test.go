package ebbsqlite_test

import (
	"testing"

	"github.com/ebbq/ebb/ebbdriver"
)

func TestTaskListRejectsUnknownState(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	if _, err := d.TaskList(t.Context(), ebbdriver.TaskListParams{State: "finished"}); err == nil {
		t.Error("TaskList of state \"finished\" succeeded")
	}
}
