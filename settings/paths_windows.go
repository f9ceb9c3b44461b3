package settings

import (
	"os"
	"path/filepath"
)

// stateBase is %LocalAppData%: run state belongs to this machine and must not roam.
func stateBase() (string, error) {
	if d := os.Getenv("LocalAppData"); d != "" {
		return d, nil
	}
	return os.UserCacheDir()
}

// DefaultLocation is %LocalAppData%\snapback\Backups.
func DefaultLocation() string {
	base, err := stateBase()
	if err != nil {
		return ""
	}
	return filepath.Join(base, appDir, "Backups")
}
