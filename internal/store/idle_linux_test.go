package store

import "testing"

func TestRunIdle(t *testing.T) {
	class := -1
	RunIdle(func() { class = ioPriorityClass() })
	if class != ioprioClassIdle {
		t.Errorf("I/O priority class inside RunIdle = %d, want idle (%d)", class, ioprioClassIdle)
	}
	if c := ioPriorityClass(); c == ioprioClassIdle {
		t.Error("the caller's thread was left at idle priority")
	}
}
