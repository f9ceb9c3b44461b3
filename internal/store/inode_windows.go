//go:build windows

package store

import "io/fs"

// inodeOf: FileInfo from a directory walk carries no file index on Windows, so every file
// counts as unique to its folder (sizes over-count hard-linked snapshots there).
func inodeOf(fs.FileInfo) (ino, nlink uint64, ok bool) { return 0, 0, false }

// markReadOnly is a no-op on Windows: the read-only attribute would make the engine's
// rename-over-existing (MoveFileEx REPLACE_EXISTING) fail on the next run.
func markReadOnly(string, fs.FileInfo) error { return nil }
