//go:build windows

package mobilebackup2

import (
	"io/fs"
	"os"
)

// openNoFollow opens read-only; the resolver has already refused reparse points via Lstat.
func openNoFollow(p string) (*os.File, error) { return os.Open(p) }

// createExcl creates a new file (never an existing one) for writing. perm is not applied:
// Windows' read-only attribute (what 0444 becomes) would make the file impossible to
// replace or remove by the next run.
func createExcl(name string, _ fs.FileMode) (*os.File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}
