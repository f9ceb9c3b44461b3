package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"snapback/internal/backupfmt"
)

// fingerprint identifies the Status.plist and Manifest.db of a backup folder by inode, size
// and modification time. Every backup, Snapback's or another tool's, replaces both, so a
// different fingerprint on the latest folder means someone backed up into it since it was
// committed.
func fingerprint(dir string) string {
	var parts []string
	for _, name := range []string{backupfmt.StatusPlistName, backupfmt.ManifestDBName} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			parts = append(parts, name+":none")
			continue
		}
		ino, _, _ := inodeOf(fi)
		parts = append(parts, fmt.Sprintf("%s:%d:%d:%d", name, ino, fi.Size(), fi.ModTime().UnixNano()))
	}
	return strings.Join(parts, " ")
}

// adoptExternal handles a latest folder that another tool (idevicebackup2, Finder, iTunes)
// backed up into after Snapback committed it as prev. A finished, complete backup is
// verified, indexed and recorded as a snapshot of kind "external"; prev's record goes, since
// its content was replaced in place. An unfinished one (Status.plist not "finished", or
// files missing) is never recorded: it is moved aside, named in the log and in the next
// record's notes, and the run becomes a full backup. The caller holds the device lock.
func (s *Store) adoptExternal(ctx context.Context, udid string, prev Snapshot) (*Snapshot, []string, error) {
	latest := s.l.latest(udid)
	facts, verr := s.verifyBackup(ctx, latest, udid)
	if verr != nil {
		var ve *VerifyError
		if !errors.As(verr, &ve) {
			return nil, nil, verr
		}
		aside := filepath.Join(s.l.device(udid), "unfinished-external-"+s.now().UTC().Format(IDLayout))
		if err := renameDurable(latest, aside); err != nil {
			return nil, nil, fmt.Errorf("move aside an unfinished backup by another program: %w", err)
		}
		if err := removeFile(s.l.record(udid, prev.ID)); err != nil {
			return nil, nil, err
		}
		note := fmt.Sprintf("another program backed up into the latest backup folder after snapshot %s and did not finish (%s); "+
			"it was not recorded as a snapshot, was moved to %s for inspection, and this backup is a full one", prev.ID, ve.Problems[0], aside)
		s.log.Warn(note, "udid", udid)
		return nil, []string{note}, nil
	}
	st, _ := backupfmt.ReadStatus(filepath.Join(latest, backupfmt.StatusPlistName))
	t := s.now()
	if st.Date.After(prev.Time) {
		t = st.Date
	}
	u, err := measure(ctx, latest, true)
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := s.indexNewFiles(ctx, udid, latest, sumTable{}); err != nil {
		return nil, nil, err
	}
	rec := Snapshot{ID: newID(t, prev.ID), UDID: udid, Time: t.UTC(), Kind: KindExternal, Device: facts.Device,
		Encrypted: facts.Encrypted, FileCount: u.Files, TotalSize: u.Total, UniqueSize: u.Unique, Fingerprint: fingerprint(latest),
		Notes: []string{fmt.Sprintf("backed up by another program into the latest folder, replacing snapshot %s", prev.ID)}}
	if err := writeRecord(s.l.record(udid, rec.ID), rec); err != nil {
		return nil, nil, err
	}
	// Written first, removed second: a crash in between leaves prev without a folder, which
	// recovery forgets.
	if err := removeFile(s.l.record(udid, prev.ID)); err != nil {
		return nil, nil, err
	}
	// The files the other program replaced are now only in the snapshots that shared them
	// with prev: the one before it and any archive. Their own bytes grew.
	if err := s.refreshSharers(ctx, udid, rec.ID); err != nil {
		return nil, nil, err
	}
	s.log.Info("recorded a backup made by another program", "udid", udid, "snapshot", rec.ID, "replaces", prev.ID)
	return &rec, []string{fmt.Sprintf("recorded snapshot %s, a backup another program made into the latest folder", rec.ID)}, nil
}

// refreshSharers re-measures the snapshot recorded just before newest and every archive.
func (s *Store) refreshSharers(ctx context.Context, udid, newest string) error {
	ids := map[string]bool{}
	recs, err := readRecords(s.l.snapshots(udid))
	if err != nil {
		return err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].ID < newest {
			ids[recs[i].ID] = true
			break
		}
	}
	archives, err := s.listArchives(udid)
	if err != nil {
		return err
	}
	for _, a := range archives {
		ids[a.ID] = true
	}
	return s.refreshAll(ctx, udid, ids)
}
