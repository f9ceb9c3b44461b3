//go:build unix

package mobilebackup2

import "golang.org/x/sys/unix"

// freeBytes is the space available to this user on the filesystem holding dir: Bavail
// (not Bfree, which counts root's reserve) times Frsize (the unit blocks are counted in;
// Bsize is only the preferred I/O size).
func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(frsize(&st)), nil
}
