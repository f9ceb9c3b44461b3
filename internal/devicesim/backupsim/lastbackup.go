package backupsim

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"snapback/internal/backupfmt"
)

// lastBackup is what the device remembers of the last backup it completed: the backup's
// UUID, a hash of the Manifest.db bytes it uploaded, and the version of every item at
// that time. Real devices track their last backup the same way: whether a backup is
// incremental depends on the host's Status.plist UUID matching the one the device
// remembers (pymobiledevice3 forces a full backup merely by writing a fresh Status.plist
// with a new UUID, mobilebackup2.py `backup(full=True)`; protocol.md §7.9).
//
// With it, an incremental costs the device O(changed items) instead of a pass over every
// row of the host's Manifest.db through pure-Go SQLite (ten times the host's own CPU on a
// 100,000-file device, issue #16). The host is trusted no more than before: the device
// still downloads Manifest.plist and Manifest.db as real devices do (idevicebackup2 prints
// "Sending …/Manifest.db" on every incremental, protocol.md §7.9), and only when those
// bytes are exactly the ones it uploaded does it use what it remembers; a host that
// changed, truncated or replaced the database gets the full SQLite diff as before.
//
// A lastBackup is immutable once made; Device.last is replaced as a whole.
type lastBackup struct {
	uuid  string
	dbSum [16]byte // XXH3-128: tells the same bytes from changed ones, at 10x SHA-256's speed
	vers  []uint32
	bag   []byte // the keybag the backup was made with (nil: not encrypted)
	// db is the device's own copy of the plaintext Manifest.db it built for that backup
	// (a hard link in Options.TempDir), or "" when it keeps none. The next backup copies it
	// and applies only the changed rows instead of generating every row again.
	db string
}

// keptDBPath is where a device with an Options.TempDir keeps its own Manifest.db.
func (d *Device) keptDBPath() string {
	if d.opts.TempDir == "" {
		return ""
	}
	return filepath.Join(d.opts.TempDir, "backupsim-"+d.opts.Identity.UDID+"-Manifest.db")
}

// matches reports whether the host's backup is exactly the one l describes: same UUID, the
// very Manifest.db bytes the device uploaded, and a Manifest.plist that openHostDB would
// accept (encryption and keybag unchanged).
func (l *lastBackup) matches(d *Device, uuid string, dbSum [16]byte, m hostManifest) bool {
	if l == nil || l.uuid == "" || l.uuid != uuid || l.dbSum != dbSum || !bytes.Equal(l.bag, d.bag) {
		return false
	}
	if m.IsEncrypted != (d.keys != nil) {
		return false
	}
	return d.keys == nil || bytes.Equal(m.BackupKeyBag, d.bag)
}

// diffFromLast is diff for a host that holds exactly the last backup: it marks in have the
// items whose version did not change and returns the fileIDs of the regular files deleted
// since (plus the hostile rows, which diff finds in the host's database as unknown files).
func (d *Device) diffFromLast(l *lastBackup, vers []uint32, have []uint64) []string {
	var removals []string
	for i, old := range l.vers {
		if old == 0 {
			continue
		}
		if i < len(vers) && vers[i] != 0 {
			if vers[i] == old {
				have[i/64] |= 1 << (i % 64)
			}
			continue // changed files are overwritten by the move, not removed
		}
		it := genItem(d.opts.Seed, i)
		if it.kind != kindSymlink {
			removals = append(removals, backupfmt.FileID(it.domain, it.rel))
		}
	}
	if d.opts.Hostile {
		for _, r := range hostileRecords() {
			if backupfmt.ValidFileID(r.FileID) {
				removals = append(removals, r.FileID)
			}
		}
	}
	return removals
}

// updateManifestDB builds the device's Manifest.db at path from its own copy of the last one
// (l.db, rows for l.vers): it copies the file and replaces only the rows of items whose
// version changed. The result has the same rows writeManifestDB would generate.
func (d *Device) updateManifestDB(ctx context.Context, l *lastBackup, path string, vers []uint32) error {
	if err := copyFile(l.db, path); err != nil {
		return err
	}
	// The copy is scratch until it is complete, as in backupfmt.CreateManifestDB: no journal,
	// no fsync per commit, one fsync at the end.
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: "_pragma=journal_mode(OFF)&_pragma=synchronous(OFF)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return fmt.Errorf("update Manifest.db: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update Manifest.db: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	del, err := tx.PrepareContext(ctx, `DELETE FROM Files WHERE fileID = ?`)
	if err != nil {
		return fmt.Errorf("update Manifest.db: %w", err)
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO Files (fileID, domain, relativePath, flags, file) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("update Manifest.db: %w", err)
	}
	for i := range max(len(vers), len(l.vers)) {
		var old, cur uint32
		if i < len(l.vers) {
			old = l.vers[i]
		}
		if i < len(vers) {
			cur = vers[i]
		}
		if old == cur {
			continue
		}
		if old != 0 {
			it := genItem(d.opts.Seed, i)
			if _, err := del.ExecContext(ctx, backupfmt.FileID(it.domain, it.rel)); err != nil {
				return fmt.Errorf("update Manifest.db: delete item %d: %w", i, err)
			}
		}
		if cur != 0 {
			r := d.record(i, cur, true)
			r.File.RelativePath = r.RelativePath
			blob, err := backupfmt.EncodeMBFile(r.File)
			if err != nil {
				return err
			}
			if _, err := ins.ExecContext(ctx, r.FileID, r.Domain, r.RelativePath, r.Flags, blob); err != nil {
				return fmt.Errorf("update Manifest.db: insert item %d: %w", i, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update Manifest.db: commit: %w", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("update Manifest.db: close: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// copyFile copies src to a new file dst (copy_file_range where the kernel offers it).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy Manifest.db: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("copy Manifest.db: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy Manifest.db: %w", err)
	}
	return out.Close()
}

// keepManifestDB makes the device's own copy of the Manifest.db it is about to upload: a
// hard link next to the kept one, renamed over it only when the backup completes
// (commitLast). It returns "" when the device keeps no copy.
func (d *Device) keepManifestDB(plain string) string {
	kept := d.keptDBPath()
	if kept == "" {
		return ""
	}
	pending := kept + ".pending"
	_ = os.Remove(pending) // a leftover of a backup that did not complete
	if err := os.Link(plain, pending); err != nil {
		return "" // another filesystem, or no links: generate every row next time
	}
	return pending
}

// commitLast records st's backup as the device's last one; d.mu must be held. The pending
// copy of its Manifest.db replaces the kept one.
func (d *Device) commitLast(l *lastBackup) {
	if l == nil {
		d.last = nil
		return
	}
	if l.db != "" {
		kept := d.keptDBPath()
		if err := os.Rename(l.db, kept); err != nil {
			l.db = ""
		} else {
			l.db = kept
		}
	}
	d.last = l
}

// dropPending removes the pending copy of a backup that did not complete.
func dropPending(l *lastBackup) {
	if l != nil && l.db != "" {
		_ = os.Remove(l.db)
	}
}
