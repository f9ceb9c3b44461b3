//go:build unix

package mobilebackup2

import (
	"os"
	"syscall"
)

// openNoFollow opens a file read-only without following a final symlink, closing the gap
// between the resolver's Lstat and the open.
func openNoFollow(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}
