// Package browsetest builds small Apple-format backup folders for tests of browse and of the
// CLI: plain or encrypted (with backupcrypto's writing side and low KDF rounds), with rows
// chosen by the test, including hostile ones.
package browsetest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
)

// File is one Manifest.db row of a fixture.
type File struct {
	Domain       string
	RelativePath string
	Content      []byte    // regular files
	Modified     time.Time // LastModified; default 2024-01-02 03:04:05 UTC
	Flags        int64     // default backupfmt.FlagFile
	Target       string    // symlinks
	// EmptyBlob stores an empty file of an encrypted backup as a 0-byte blob instead of one
	// padding block (both occur; readers must accept both).
	EmptyBlob bool
	// NoBlob leaves a regular file's blob out.
	NoBlob bool
}

// Options configure Write.
type Options struct {
	// Password, when not empty, makes an encrypted backup (DPIC and ITER of 10 rounds).
	Password string
	// PlainManifestDB leaves Manifest.db unencrypted in an encrypted backup (no ManifestKey),
	// as iOS did before 10.2.
	PlainManifestDB bool
}

// DefaultModified is the modification time of files that do not set one.
var DefaultModified = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Write creates the backup folder dir (which must not exist) with Manifest.plist, Manifest.db,
// Status.plist and the blobs of files.
func Write(dir string, files []File, opts Options) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	var keys *backupcrypto.Keys
	m := backupfmt.Manifest{
		Version: "10.0", Date: DefaultModified, SystemDomainsVersion: "24.0",
		Lockdown: map[string]any{"ProductVersion": "17.4", "ProductType": "iPhone15,2", "BuildVersion": "21E219",
			"UniqueDeviceID": filepath.Base(dir), "SerialNumber": "F00", "DeviceName": "Test iPhone"},
	}
	if opts.Password != "" {
		bag, k, err := backupcrypto.NewBackupKeyBag([]byte(opts.Password), backupcrypto.BagOptions{DPIC: 10, Iter: 10})
		if err != nil {
			return err
		}
		keys, m.BackupKeyBag, m.IsEncrypted = k, bag, true
	}
	scratch, err := os.MkdirTemp("", "browsetest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	plainDB := filepath.Join(scratch, backupfmt.ManifestDBName)
	w, err := backupfmt.CreateManifestDB(plainDB)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := addFile(dir, w, keys, f); err != nil {
			w.Close()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	dbPath := filepath.Join(dir, backupfmt.ManifestDBName)
	if keys != nil && !opts.PlainManifestDB {
		if m.ManifestKey, err = keys.EncryptManifestDB(plainDB, dbPath); err != nil {
			return err
		}
	} else if err := copyFile(plainDB, dbPath); err != nil {
		return err
	}
	mb, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, backupfmt.ManifestPlistName), mb, 0o644); err != nil {
		return err
	}
	st := backupfmt.Status{BackupState: "new", Date: DefaultModified, IsFullBackup: true, SnapshotState: backupfmt.SnapshotFinished, UUID: "00000000-0000-4000-8000-000000000000", Version: "3.3"}
	sb, err := st.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, backupfmt.StatusPlistName), sb, 0o644)
}

func addFile(dir string, w *backupfmt.ManifestWriter, keys *backupcrypto.Keys, f File) error {
	if f.Flags == 0 {
		f.Flags = backupfmt.FlagFile
	}
	if f.Modified.IsZero() {
		f.Modified = DefaultModified
	}
	id := backupfmt.FileID(f.Domain, f.RelativePath)
	mb := backupfmt.MBFile{LastModified: f.Modified.Unix(), LastStatusChange: f.Modified.Unix(), Birth: f.Modified.Unix(), UserID: 501, GroupID: 501}
	switch f.Flags {
	case backupfmt.FlagDir:
		mb.Mode = 0o40755
	case backupfmt.FlagSymlink:
		mb.Mode, mb.Target = 0o120755, f.Target
	default:
		mb.Mode, mb.Size, mb.ProtectionClass = 0o100644, int64(len(f.Content)), 3
		if !f.NoBlob {
			ek, err := writeBlob(backupfmt.BlobPath(dir, id), keys, f)
			if err != nil {
				return err
			}
			mb.EncryptionKey = ek
		}
	}
	return w.Add(backupfmt.Record{FileID: id, Domain: f.Domain, RelativePath: f.RelativePath, Flags: f.Flags, File: mb})
}

func writeBlob(path string, keys *backupcrypto.Keys, f File) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("blob of %s %q: %w", f.Domain, f.RelativePath, err)
	}
	defer out.Close()
	if keys == nil {
		_, err := out.Write(f.Content)
		return nil, err
	}
	if f.EmptyBlob && len(f.Content) == 0 {
		_, wrapped, err := keys.NewFileKey(3)
		return wrapped, err
	}
	return keys.EncryptFile(out, bytes.NewReader(f.Content), 3)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
