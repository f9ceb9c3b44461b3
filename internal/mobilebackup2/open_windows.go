//go:build windows

package mobilebackup2

import "os"

// openNoFollow opens read-only; the resolver has already refused reparse points via Lstat.
func openNoFollow(p string) (*os.File, error) { return os.Open(p) }
