package atomicfile

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// HaveSyncFS says SyncFS flushes everything, so writers may skip their per-file fsyncs.
const HaveSyncFS = true

// SyncFS flushes the whole filesystem holding dir (syncfs(2)): one call instead of one fsync
// per file written there, so a backup folder is on disk before it is reported or committed.
func SyncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("flush %s to disk: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("flush %s to disk: %w", dir, err)
	}
	return nil
}
