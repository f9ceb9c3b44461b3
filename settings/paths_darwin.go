package settings

import (
	"os"
	"path/filepath"
)

// stateBase is ~/Library/Application Support, where macOS apps keep machine-owned state.
func stateBase() (string, error) {
	return os.UserConfigDir()
}

// DefaultLocation is ~/Library/Application Support/snapback/Backups, next to Apple's own
// MobileSync folder but never inside it.
func DefaultLocation() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, appDir, "Backups")
}
