//go:build !darwin && !windows

package settings

import (
	"os"
	"path/filepath"
)

// stateBase follows the XDG base directory spec: $XDG_STATE_HOME or ~/.local/state.
func stateBase() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "state"), nil
}

// DefaultLocation is where backups go unless the settings say otherwise:
// $XDG_DATA_HOME/snapback/Backups or ~/.local/share/snapback/Backups.
func DefaultLocation() string {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, appDir, "Backups")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".local", "share", appDir, "Backups")
}
