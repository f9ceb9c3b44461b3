//go:build !darwin && !windows

package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultLocation is the OS data folder for backups: $XDG_DATA_HOME/snapback/Backups, with
// XDG_DATA_HOME defaulting to ~/.local/share as the XDG base directory spec says.
func DefaultLocation() (string, error) {
	base := os.Getenv("XDG_DATA_HOME")
	if !filepath.IsAbs(base) { // the spec says relative values are invalid and must be ignored
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("default backup location: %w", err)
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "snapback", "Backups"), nil
}

// MobileSyncLocation is Apple's MobileSync backup folder. There is none on this OS.
func MobileSyncLocation() (string, error) {
	return "", errors.New("there is no Apple MobileSync backup folder on this system; choose a folder instead")
}
