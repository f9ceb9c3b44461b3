//go:build unix

package browse

import (
	"os"
	"syscall"
)

// openNoFollow opens a blob for reading; a symlink in its place fails (ELOOP) instead of
// being followed.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}
