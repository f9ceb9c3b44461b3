//go:build unix

package store

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

func inodeOf(fi fs.FileInfo) (ino, nlink uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(st.Ino), uint64(st.Nlink), true
}

// markReadOnly clears the write bits of a committed file. The engine replaces files by
// rename, which needs only the directory to be writable, so this never gets in its way; it
// stops tools that would truncate a hard-linked file in place.
func markReadOnly(path string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o222 == 0 {
		return nil
	}
	return os.Chmod(path, fi.Mode().Perm()&^0o222)
}

// openNoFollow opens a file for reading and refuses a symlink in its place: a blob is never a
// link, and following one would read (or restore) whatever file it points to. It leaves the
// access time alone where it can (openNoATime); the kernel allows that only to the file's
// owner, so a file of another user (a store written by another account) is opened without.
func openNoFollow(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|openNoATime, 0)
	if openNoATime != 0 && errors.Is(err, syscall.EPERM) {
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	return f, err
}
