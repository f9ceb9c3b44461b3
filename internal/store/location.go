package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ResolveLocation maps a destination folder chosen in settings to the store's location. On
// the root of a volume (a mount point or a drive root) the store keeps its folders in
// <volume>/Snapback.Backups/ rather than cluttering the root; an existing
// Snapback.Backups/ is used even when the volume is not mounted right now, so that the
// volume guard sees the same location either way and can refuse it.
func ResolveLocation(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("no backup location given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("backup location %q: %w", dir, err)
	}
	sub := filepath.Join(abs, VolumeRootDir)
	if _, err := os.Stat(sub); err == nil {
		return sub, nil
	}
	root, err := isMountPoint(abs)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("backup location %q: %w", dir, err)
	}
	if root {
		return sub, nil
	}
	return abs, nil
}
