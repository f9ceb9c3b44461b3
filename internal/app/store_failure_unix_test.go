//go:build unix

package app

import (
	"os"
	"syscall"
	"testing"

	"snapback/internal/failure"
)

// Store errors are classified once at the app boundary: a missing disk, a held lock, no
// space and the OS errors each get their class (a full disk is never "link lost").
func TestStoreFailureClasses(t *testing.T) {
	cases := []struct {
		err  error
		want failure.Class
	}{
		{&os.PathError{Op: "write", Path: "/b/x", Err: syscall.ENOSPC}, failure.NoSpace},
		{&os.PathError{Op: "open", Path: "/b/x", Err: syscall.EROFS}, failure.ReadOnly},
		{failure.New(failure.LinkLost, nil), failure.LinkLost},
	}
	for _, c := range cases {
		if got := failure.ClassOf(storeFailure(c.err)); got != c.want {
			t.Errorf("%v: class %s, want %s", c.err, got, c.want)
		}
	}
}
