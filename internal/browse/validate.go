package browse

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"snapback/internal/backupfmt"
	"snapback/internal/failure"
)

// Validate checks a backup folder before anything contacts a device (restore --dir): the
// manifest plists read, Manifest.db opens, every row decodes, and every regular file has its
// blob (a regular file, not a symlink; for plain backups of the recorded size). A truncated
// or damaged folder is refused here, as class failure.Damaged naming the first problems,
// instead of failing half-way through a restore with a device error. Encrypted backups keep
// Manifest.db encrypted; without the password only its presence is checked (browse.Open with
// the password decrypts it, and Backup.Validate checks it then).
func Validate(ctx context.Context, dir string) error {
	m, err := backupfmt.ReadManifest(filepath.Join(dir, backupfmt.ManifestPlistName))
	if err != nil {
		return damaged(dir, []string{fmt.Sprintf("Manifest.plist: %v", err)})
	}
	dbPath := filepath.Join(dir, backupfmt.ManifestDBName)
	if m.IsEncrypted {
		if fi, err := os.Stat(dbPath); err != nil || fi.Size() == 0 {
			return damaged(dir, []string{"Manifest.db is missing or empty"})
		}
		return nil
	}
	db, err := backupfmt.OpenManifestDB(dbPath)
	if err != nil {
		return damaged(dir, []string{fmt.Sprintf("Manifest.db: %v", err)})
	}
	defer db.Close()
	return validateRows(ctx, dir, db, false)
}

// Validate checks the open backup's rows and blobs as the package-level Validate does, for
// encrypted backups too (their Manifest.db is decrypted by now).
func (b *Backup) Validate(ctx context.Context) error {
	return validateRows(ctx, b.dir, b.db, b.keys != nil)
}

func validateRows(ctx context.Context, dir string, db *backupfmt.ManifestDB, encrypted bool) error {
	const show = 10
	var problems []string
	n := 0
	add := func(s string) {
		if n++; len(problems) < show {
			problems = append(problems, s)
		}
	}
	rows := 0
	err := db.EachTolerant(ctx, func(r backupfmt.Record) error {
		rows++
		if r.Flags != backupfmt.FlagFile {
			return nil
		}
		if !backupfmt.ValidFileID(r.FileID) {
			add(fmt.Sprintf("row %s %q has an invalid fileID %q", r.Domain, r.RelativePath, r.FileID))
			return nil
		}
		fi, err := os.Lstat(backupfmt.BlobPath(dir, r.FileID))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			add(fmt.Sprintf("blob %s (%s %q) is missing", r.FileID, r.Domain, r.RelativePath))
		case err != nil:
			add(fmt.Sprintf("blob %s: %v", r.FileID, err))
		case !fi.Mode().IsRegular():
			add(fmt.Sprintf("blob %s (%s %q) is not a regular file (%s)", r.FileID, r.Domain, r.RelativePath, fi.Mode().Type()))
		case !encrypted && fi.Size() != r.File.Size:
			add(fmt.Sprintf("blob %s (%s %q) has %d bytes, Manifest.db says %d", r.FileID, r.Domain, r.RelativePath, fi.Size(), r.File.Size))
		}
		return nil
	}, func(fileID string, err error) { add(err.Error()) })
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		add(err.Error())
	}
	if rows == 0 && n == 0 {
		add("Manifest.db has no rows")
	}
	if n > len(problems) {
		problems = append(problems, fmt.Sprintf("%d problems in total", n))
	}
	if len(problems) > 0 {
		return damaged(dir, problems)
	}
	return nil
}

func damaged(dir string, problems []string) error {
	return &failure.Error{Class: failure.Damaged, Detail: dir + ": " + strings.Join(problems, "; "),
		Fix: "restore from another snapshot (snapback snapshots lists them) or another copy of the backup; nothing was sent to the device"}
}

// Undecodable lists the Manifest.db rows that List and Extract skipped because they did not
// decode (damage), each with its error. Readers report them and go on with the rest.
func (b *Backup) Undecodable() []string { return b.bad }

func (b *Backup) each(ctx context.Context, fn func(backupfmt.Record) error) error {
	return b.db.EachTolerant(ctx, fn, func(fileID string, err error) {
		b.bad = append(b.bad, err.Error())
	})
}
