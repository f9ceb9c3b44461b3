//go:build windows

package mobilebackup2

import "os"

// openNoFollow opens read-only; the resolver has already refused reparse points via Lstat.
func openNoFollow(p string) (*os.File, error) { return os.Open(p) }

// createExcl creates a new file (never an existing one) for writing.
func createExcl(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}
