package backupsim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"snapback/internal/backupfmt"
)

// Restore in the simulator: the device reads a backup back from the host (Status.plist,
// Manifest.plist, Manifest.db, then every blob), checks each blob byte for byte against what
// it would have generated for that file version, and on success makes that content its
// current content. It cannot restore bytes it did not generate (files from another seed or
// a real device): such a backup ends with an error instead.

const restoreBatch = 500 // blobs per DownloadFiles

type restoreStats struct {
	files, bytes        int64
	missing, mismatched int64
	foreign             int64 // rows the generator cannot have produced
	versions            []uint32
}

func (s *session) restoreRequest(ctx context.Context, req map[string]any) error {
	d := s.d
	if !d.busy.TryLock() {
		return s.reply(100, "A backup or restore is already in progress", "")
	}
	defer d.busy.Unlock()
	st, res, err := s.restore(ctx, req)
	d.mu.Lock()
	d.counters.FilesRestored += st.files
	d.counters.BytesRestored += st.bytes
	switch {
	case err != nil:
		d.counters.FailedRestores++
		d.counters.LastErrorCode, d.counters.LastErrorDescription = -1, err.Error()
	case res.code != 0:
		d.counters.FailedRestores++
		d.counters.LastErrorCode, d.counters.LastErrorDescription = res.code, res.desc
	default:
		d.counters.Restores++
		d.counters.LastErrorCode, d.counters.LastErrorDescription = 0, ""
		d.versions = st.versions
		d.base, d.baseRound = append([]uint32(nil), st.versions...), len(d.rounds)
	}
	saveErr := d.saveLocked()
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.reply(res.code, res.desc, ""); err != nil {
		return err
	}
	return saveErr
}

func (s *session) restore(ctx context.Context, req map[string]any) (st restoreStats, res backupResult, err error) {
	d := s.d
	src := d.opts.Identity.UDID
	if v, ok := req["SourceIdentifier"].(string); ok && v != "" {
		src = v
	}
	scratch, err := d.tempDir()
	if err != nil {
		return st, backupResult{100, err.Error()}, nil
	}
	defer os.RemoveAll(scratch)

	var statusBuf, plistBuf limitedBuffer
	dbPath := filepath.Join(scratch, "restore-Manifest.db")
	dbFile, err := os.Create(dbPath)
	if err != nil {
		return st, backupResult{100, err.Error()}, nil
	}
	dbSink := &capWriter{w: dbFile, left: maxHostDB}
	found, _, err := s.download(ctx, []string{src + "/" + backupfmt.StatusPlistName, src + "/" + backupfmt.ManifestPlistName, src + "/" + backupfmt.ManifestDBName},
		func(i int) io.Writer { return [...]io.Writer{&statusBuf, &plistBuf, dbSink}[i] })
	cerr := dbFile.Close()
	if err != nil {
		return st, res, err
	}
	if !found[0] || !found[1] || !found[2] || cerr != nil || dbSink.err != nil {
		return st, backupResult{205, describe(205)}, nil
	}
	if status, perr := backupfmt.ParseStatus(statusBuf.Bytes()); perr != nil || status.SnapshotState != backupfmt.SnapshotFinished {
		return st, backupResult{205, describe(205)}, nil
	}
	manifest, perr := backupfmt.ParseManifest(plistBuf.Bytes())
	if perr != nil {
		return st, backupResult{205, describe(205)}, nil
	}
	if manifest.IsEncrypted {
		opts, _ := req["Options"].(map[string]any)
		pw, _ := opts["Password"].(string)
		if d.keys == nil || !d.checkPassword(pw) || !bytes.Equal(manifest.BackupKeyBag, d.bag) {
			return st, backupResult{207, "Invalid password when restoring encrypted backup (MKBKeyBagUnlock error)"}, nil
		}
	} else if d.keys != nil {
		return st, backupResult{100, "The simulator restores backups only in its current encryption mode"}, nil
	}
	plainDB, ok := d.openHostDB(hostManifest{manifest.IsEncrypted, manifest.BackupKeyBag, manifest.ManifestKey}, dbPath, scratch)
	if !ok {
		return st, backupResult{205, "Error reading backup database"}, nil
	}
	db, err := backupfmt.OpenManifestDB(plainDB)
	if err != nil {
		return st, backupResult{205, "Error reading backup database"}, nil
	}
	defer db.Close()

	cur := d.snapshotVersions()
	st.versions = make([]uint32, len(cur)) // items absent from the backup end up deleted
	var batch []restoreItem
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		paths := make([]string, len(batch))
		sinks := make([]*compareWriter, len(batch))
		for j, it := range batch {
			paths[j] = blobName(src, it.fileID, false)
			sinks[j] = &compareWriter{want: d.blob(it.index, it.version, it.size)}
		}
		got, _, err := s.download(ctx, paths, func(j int) io.Writer { return sinks[j] })
		if err != nil {
			return err
		}
		for j, it := range batch {
			switch {
			case !got[j]:
				st.missing++
			case sinks[j].differs || sinks[j].n != d.blobSize(it.size):
				st.mismatched++
			default:
				st.files++
				st.bytes += it.size
			}
		}
		batch = batch[:0]
		return nil
	}
	var linkErr error
	err = db.Each(ctx, func(r backupfmt.Record) error {
		if r.Flags == backupfmt.FlagDir {
			return nil
		}
		i, ok := itemIndex(d.opts.Seed, r.Domain, r.RelativePath)
		var v uint32
		if ok {
			v, ok = versionOf(d.opts.Seed, i, r.File.LastModified)
		}
		// Items are never renumbered, so a backup of this device only names indices below
		// the current count; anything else is not ours (and must not size an allocation).
		if !ok || i >= len(cur) || r.FileID != backupfmt.FileID(r.Domain, r.RelativePath) {
			st.foreign++
			return nil
		}
		st.versions[i] = v
		if r.Flags != backupfmt.FlagFile {
			return nil
		}
		batch = append(batch, restoreItem{index: i, version: v, size: r.File.Size, fileID: r.FileID})
		if len(batch) >= restoreBatch {
			if err := flush(); err != nil {
				linkErr = err
				return err
			}
		}
		return nil
	})
	if linkErr != nil {
		return st, res, linkErr
	}
	if err != nil {
		return st, backupResult{205, "Error reading backup database"}, nil
	}
	if err := flush(); err != nil {
		return st, res, err
	}
	if st.missing > 0 {
		return st, backupResult{205, fmt.Sprintf("Multiple errors downloading files (%d missing)", st.missing)}, nil
	}
	if st.mismatched > 0 || st.foreign > 0 {
		return st, backupResult{100, fmt.Sprintf("The simulator cannot restore content it did not generate (%d differing, %d foreign files)", st.mismatched, st.foreign)}, nil
	}
	return st, backupResult{}, nil
}

type restoreItem struct {
	index   int
	version uint32
	size    int64
	fileID  string
}

// compareWriter checks a downloaded blob against the expected bytes as they stream in.
type compareWriter struct {
	want    io.Reader
	buf     []byte
	n       int64
	differs bool
}

func (c *compareWriter) Write(p []byte) (int, error) {
	total := len(p)
	c.n += int64(total)
	for len(p) > 0 && !c.differs {
		if c.buf == nil {
			c.buf = make([]byte, 32<<10)
		}
		k := min(len(p), len(c.buf))
		m, _ := io.ReadFull(c.want, c.buf[:k])
		if m < k || !bytes.Equal(c.buf[:k], p[:k]) {
			c.differs = true
		}
		p = p[k:]
	}
	return total, nil
}
