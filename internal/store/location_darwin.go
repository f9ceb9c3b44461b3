//go:build darwin

package store

import (
	"fmt"
	"os"
	"path/filepath"
)

// DefaultLocation is ~/Library/Application Support/Snapback/Backups.
func DefaultLocation() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("default backup location: %w", err)
	}
	return filepath.Join(home, "Library", "Application Support", "Snapback", "Backups"), nil
}

// MobileSyncLocation is the folder Finder and iTunes keep backups in.
func MobileSyncLocation() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("MobileSync folder: %w", err)
	}
	return filepath.Join(home, "Library", "Application Support", "MobileSync", "Backup"), nil
}
