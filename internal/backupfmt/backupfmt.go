// Package backupfmt reads and writes the Apple backup folder format (iOS 10 and later):
// the hashed blob layout, Manifest.db with its NSKeyedArchiver MBFile blobs, and the
// Status.plist, Manifest.plist and Info.plist property lists.
//
// It is shared by the simulated device (which generates backups), the store (which verifies
// them) and browse/extract. It does no protocol work and knows nothing of devices.
package backupfmt

import (
	"crypto/sha1"
	"encoding/hex"
	"path/filepath"
)

// Manifest.db row flags.
const (
	FlagFile    = 1
	FlagDir     = 2
	FlagSymlink = 4
)

// File names at the top of a device's backup folder.
const (
	InfoPlistName     = "Info.plist"
	ManifestPlistName = "Manifest.plist"
	ManifestDBName    = "Manifest.db"
	StatusPlistName   = "Status.plist"
	// SnapshotDirName is the transient folder the device uploads into before moving
	// everything to its final place.
	SnapshotDirName = "Snapshot"
)

// FileID returns the blob name of a file: the lowercase hex SHA-1 of the UTF-8 string
// domain + "-" + relativePath. Domain root rows (relativePath "") hash "Domain-".
func FileID(domain, relativePath string) string {
	h := sha1.New()
	h.Write([]byte(domain))
	h.Write([]byte{'-'})
	h.Write([]byte(relativePath))
	return hex.EncodeToString(h.Sum(nil))
}

// BlobPath returns where the blob of fileID lives: backupDir/<first two hex chars>/<fileID>.
// fileID is used as given; callers that take it from untrusted input must check it with
// ValidFileID first.
func BlobPath(backupDir, fileID string) string {
	if len(fileID) < 2 {
		return filepath.Join(backupDir, fileID)
	}
	return filepath.Join(backupDir, fileID[:2], fileID)
}

// ValidFileID reports whether s looks like a fileID: 40 lowercase hex characters. Anything
// else from a Manifest.db must not be turned into a path.
func ValidFileID(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
