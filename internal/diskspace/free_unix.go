//go:build unix

package diskspace

import (
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// Free is the space available to this (unprivileged) user on the filesystem holding dir:
// Bavail (not Bfree, which counts root's reserve) times the unit blocks are counted in
// (see blockSize; Bsize is only the preferred I/O size on Linux).
func Free(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return int64(min(uint64(st.Bavail)*blockSize(&st), math.MaxInt64)), nil
}
