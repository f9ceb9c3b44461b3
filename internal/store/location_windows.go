//go:build windows

package store

import (
	"errors"
	"os"
	"path/filepath"
)

// DefaultLocation is %APPDATA%\Snapback\Backups.
func DefaultLocation() (string, error) {
	appdata := os.Getenv("APPDATA")
	if appdata == "" {
		return "", errors.New("default backup location: APPDATA is not set")
	}
	return filepath.Join(appdata, "Snapback", "Backups"), nil
}

// MobileSyncLocation is the folder iTunes keeps backups in: %APPDATA%\Apple Computer\MobileSync\Backup
// for the classic installer, %USERPROFILE%\Apple\MobileSync\Backup for the Microsoft Store app
// (preferred when it exists, since that is the one a current iTunes writes).
func MobileSyncLocation() (string, error) {
	if profile := os.Getenv("USERPROFILE"); profile != "" {
		store := filepath.Join(profile, "Apple", "MobileSync", "Backup")
		if _, err := os.Stat(store); err == nil {
			return store, nil
		}
	}
	appdata := os.Getenv("APPDATA")
	if appdata == "" {
		return "", errors.New("MobileSync folder: APPDATA is not set")
	}
	return filepath.Join(appdata, "Apple Computer", "MobileSync", "Backup"), nil
}
