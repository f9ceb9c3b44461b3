//go:build darwin

package store

import "golang.org/x/sys/unix"

// reflinkFile clones src to dst with clonefile(2) (APFS); it keeps mode and times.
func reflinkFile(src, dst string) error {
	return unix.Clonefile(src, dst, unix.CLONE_NOFOLLOW)
}
