package mobilebackup2

import (
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncFS says syncFS flushes everything, so per-file fsync can be skipped.
const haveSyncFS = true

// syncFS flushes the whole filesystem holding dir (one syscall instead of one fsync per
// uploaded file), so the backup is on disk before success is reported.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
