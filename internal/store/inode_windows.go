//go:build windows

package store

import (
	"errors"
	"io/fs"
	"os"
)

// inodeOf: FileInfo from a directory walk carries no file index on Windows, so every file
// counts as unique to its folder (sizes over-count hard-linked snapshots there).
func inodeOf(fs.FileInfo) (ino, nlink uint64, ok bool) { return 0, 0, false }

// markReadOnly is a no-op on Windows: the read-only attribute would make the engine's
// rename-over-existing (MoveFileEx REPLACE_EXISTING) fail on the next run.
func markReadOnly(string, fs.FileInfo) error { return nil }

// openNoFollow: Windows opens the link target only for symlinks the user may create; a
// blob that is a reparse point is refused by Lstat first.
func openNoFollow(path string) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("not a regular file")}
	}
	return os.Open(path)
}
