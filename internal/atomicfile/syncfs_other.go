//go:build !linux

package atomicfile

// HaveSyncFS is false: without syncfs, writers fsync every file they write.
const HaveSyncFS = false

// SyncFS does nothing here: see HaveSyncFS.
func SyncFS(string) error { return nil }
