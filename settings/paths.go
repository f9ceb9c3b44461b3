package settings

import (
	"os"
	"path/filepath"
)

// appDir is the folder name Snapback uses under the OS config, state and runtime folders.
const appDir = "snapback"

// ConfigPath is the settings file: SNAPBACK_CONFIG when set (tests, several profiles),
// otherwise config.yaml in the OS config folder ($XDG_CONFIG_HOME/snapback on Linux,
// ~/Library/Application Support/snapback on macOS, %AppData%\snapback on Windows).
func ConfigPath() (string, error) {
	if p := os.Getenv("SNAPBACK_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, appDir, "config.yaml"), nil
}

// StateDir is the folder for machine-owned run state (state.json), see stateBase.
func StateDir() (string, error) {
	base, err := stateBase()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, appDir), nil
}

// RuntimeDir is the folder for lock files: $XDG_RUNTIME_DIR/snapback where the OS provides
// a per-user runtime folder, the state folder otherwise.
func RuntimeDir() (string, error) {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, appDir), nil
	}
	return StateDir()
}
