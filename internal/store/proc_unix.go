//go:build unix

package store

import (
	"errors"
	"syscall"
)

// processAlive reports whether pid is a running process on this host. EPERM means it exists
// but belongs to someone else, which still counts as alive.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
