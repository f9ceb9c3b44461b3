package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"snapback/internal/backupfmt"
)

// backupFacts is what verification learns about a backup folder.
type backupFacts struct {
	Device    DeviceInfo
	Encrypted bool
	Full      bool
	Rows      int      // Manifest.db rows checked
	Excepted  []string // file IDs of recorded exceptions whose blob was indeed missing or short
}

// maxProblems bounds the report of a badly broken backup; the first few say enough.
const maxProblems = 20

// verifyBackup checks that dir is a complete backup of udid: Status.plist says the snapshot
// finished, the device's transient Snapshot/ folder is gone, Info.plist names the device, and
// (unencrypted backups) Manifest.db opens read-only and every file row has a blob of the
// recorded size. Encrypted backups keep Manifest.db encrypted, so only its presence is
// checked. Nothing in dir is written.
func (s *Store) verifyBackup(ctx context.Context, dir, udid string) (backupFacts, error) {
	return s.verifyBackupExcept(ctx, dir, udid, nil)
}

// verifyBackupExcept is verifyBackup accepting a missing or short blob for the file IDs in
// except: files the device could not read (see Exception). facts.Excepted lists the ones
// that were indeed missing or short.
func (s *Store) verifyBackupExcept(ctx context.Context, dir, udid string, except map[string]bool) (backupFacts, error) {
	return s.verifyBackupDelta(ctx, dir, udid, except, nil)
}

// verifyBackupDelta is verifyBackupExcept for a staging folder whose changes against the
// latest backup d describes (nil: check every blob): see verifyRowsDelta.
func (s *Store) verifyBackupDelta(ctx context.Context, dir, udid string, except map[string]bool, d *delta) (backupFacts, error) {
	return s.verifyBackupWith(ctx, dir, udid, func(dbPath string, facts *backupFacts, add func(string, ...any)) error {
		if d != nil {
			return s.verifyRowsDelta(ctx, dir, dbPath, facts, add, except, d, nil)
		}
		return s.verifyRows(ctx, dir, dbPath, facts, add, except)
	})
}

// verifyBackupWith checks the folder's metadata and, for an unencrypted backup, calls rows
// to check Manifest.db's file rows against the blobs.
func (s *Store) verifyBackupWith(ctx context.Context, dir, udid string, rows func(dbPath string, facts *backupFacts, add func(string, ...any)) error) (backupFacts, error) {
	var facts backupFacts
	var problems []string
	add := func(format string, args ...any) {
		if len(problems) < maxProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	s.hook("verify")
	if st, err := backupfmt.ReadStatus(filepath.Join(dir, backupfmt.StatusPlistName)); err != nil {
		add("Status.plist: %v", err)
	} else {
		facts.Full = st.IsFullBackup
		if st.SnapshotState != backupfmt.SnapshotFinished {
			add("Status.plist SnapshotState is %q, not %q", st.SnapshotState, backupfmt.SnapshotFinished)
		}
	}
	if entries, err := os.ReadDir(filepath.Join(dir, backupfmt.SnapshotDirName)); err == nil && len(entries) > 0 {
		add("the device's transient %s/ folder still holds %d entries", backupfmt.SnapshotDirName, len(entries))
	}
	if info, err := backupfmt.ReadInfo(filepath.Join(dir, backupfmt.InfoPlistName)); err != nil {
		add("Info.plist: %v", err)
	} else {
		if !strings.EqualFold(info.TargetIdentifier, udid) && !strings.EqualFold(info.UniqueIdentifier, udid) {
			add("Info.plist names device %q, not %q", info.TargetIdentifier, udid)
		}
		facts.Device = DeviceInfo{Name: info.DeviceName, ProductType: info.ProductType,
			ProductVersion: info.ProductVersion, SerialNumber: info.SerialNumber}
	}
	if m, err := backupfmt.ReadManifest(filepath.Join(dir, backupfmt.ManifestPlistName)); err != nil {
		add("Manifest.plist: %v", err)
	} else {
		facts.Encrypted = m.IsEncrypted
	}
	s.hook("verify")
	dbPath := filepath.Join(dir, backupfmt.ManifestDBName)
	if facts.Encrypted {
		if fi, err := os.Stat(dbPath); err != nil || fi.Size() == 0 {
			add("Manifest.db missing or empty")
		}
	} else if err := rows(dbPath, &facts, add); err != nil {
		return facts, err
	}
	if len(problems) > 0 {
		return facts, &VerifyError{Dir: dir, Problems: problems}
	}
	return facts, nil
}

func (s *Store) verifyRows(ctx context.Context, dir, dbPath string, facts *backupFacts, add func(string, ...any), except map[string]bool) error {
	db, err := backupfmt.OpenManifestDB(dbPath)
	if err != nil {
		add("Manifest.db: %v", err)
		return nil
	}
	defer db.Close()
	bad := 0
	err = db.Each(ctx, func(r backupfmt.Record) error {
		row := func() string { return fmt.Sprintf("row %s-%s", r.Domain, r.RelativePath) }
		if !s.fileRow(facts, r.FileID, r.Flags, row, &bad, add) {
			return nil
		}
		fi, err := os.Stat(backupfmt.BlobPath(dir, r.FileID))
		if except[r.FileID] && (errors.Is(err, fs.ErrNotExist) || err == nil && fi.Size() != r.File.Size) {
			facts.Excepted = append(facts.Excepted, r.FileID)
			return nil
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			bad++
			add("blob %s (%s-%s) is missing", r.FileID, r.Domain, r.RelativePath)
		case err != nil:
			return err
		case fi.Size() != r.File.Size:
			bad++
			add("blob %s (%s-%s) has %d bytes, Manifest.db says %d", r.FileID, r.Domain, r.RelativePath, fi.Size(), r.File.Size)
		}
		return nil
	})
	if err := rowPassFailed(ctx, err, add); err != nil {
		return err
	}
	if bad > maxProblems {
		add("%d blobs are missing or wrong in total", bad)
	}
	return nil
}

// rowPassFailed reports a Manifest.db row pass that ended with err as a problem of the
// backup (add) and returns nil, unless the commit was cancelled: then it returns ctx's error.
func rowPassFailed(ctx context.Context, err error, add func(string, ...any)) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	add("Manifest.db: %v", err)
	return nil
}

// fileRow counts a Manifest.db row for the verification passes and says whether it is a file
// row whose blob must be checked. A file row with an invalid fileID is reported (row names
// it; nil says "a file row") and not checked further.
func (s *Store) fileRow(facts *backupFacts, id string, flags int64, row func() string, bad *int, add func(string, ...any)) bool {
	facts.Rows++
	if facts.Rows%4096 == 0 {
		s.hook("verify")
	}
	if flags != backupfmt.FlagFile {
		return false
	}
	if !backupfmt.ValidFileID(id) {
		*bad++
		name := "a file row"
		if row != nil {
			name = row()
		}
		add("%s has an invalid fileID %q", name, id)
		return false
	}
	return true
}
