package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"snapback/internal/atomicfile"
	"snapback/internal/failure"
)

// List returns the snapshots and archives of udid, oldest first, from their records: no
// backup folder is read, so listing is instant. The newest snapshot is marked Latest. An
// archive folder without a record (made by another tool, or a crash after its copy) is listed
// with zero sizes.
func (s *Store) List(udid string) ([]Snapshot, error) {
	if err := validUDID(udid); err != nil {
		return nil, err
	}
	if v, err := s.checkVolume(false); err != nil || v == nil {
		return nil, err
	}
	recs, err := readRecords(s.l.snapshots(udid))
	if err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i].Path = s.l.snapshot(udid, recs[i].ID)
	}
	if n := len(recs); n > 0 && !exists(recs[n-1].Path) {
		recs[n-1].Latest, recs[n-1].Path = true, s.l.latest(udid)
	}
	archives, err := s.listArchives(udid)
	if err != nil {
		return nil, err
	}
	out := append(recs, archives...)
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func (s *Store) listArchives(udid string) ([]Snapshot, error) {
	recs, err := readRecords(s.l.archives(udid))
	if err != nil {
		return nil, err
	}
	byName := map[string]bool{}
	for i := range recs {
		if recs[i].Kind != KindArchive {
			// A latest backup's record moved here as it was (moveLatestToArchive).
			recs[i] = asArchive(recs[i], ArchiveName(udid, recs[i].Time))
		}
		recs[i].Path = s.l.archive(recs[i].ID)
		byName[recs[i].ID] = true
	}
	entries, err := os.ReadDir(s.l.root)
	if err != nil {
		return nil, fmt.Errorf("list archives: %w", err)
	}
	for _, e := range entries {
		m := archiveRe.FindStringSubmatch(e.Name())
		if !e.IsDir() || m == nil || m[1] != udid || byName[e.Name()] {
			continue
		}
		recs = append(recs, Snapshot{ID: e.Name(), UDID: udid, Time: parseID(m[2]), Kind: KindArchive,
			Pinned: true, Path: s.l.archive(e.Name())})
	}
	return recs, nil
}

// Get returns one snapshot or archive by ID; "latest" names the latest backup.
func (s *Store) Get(udid, id string) (Snapshot, error) {
	all, err := s.List(udid)
	if err != nil {
		return Snapshot{}, err
	}
	for _, sn := range all {
		if sn.ID == id || (id == "latest" && sn.Latest) {
			return sn, nil
		}
	}
	return Snapshot{}, fmt.Errorf("%s of %s: %w", id, udid, ErrNotFound)
}

// withLock runs fn holding the device lock, after the volume guard. It refuses a
// destination that was never initialised: there is nothing to change there.
func (s *Store) withLock(udid string, fn func() error) error {
	return s.classify(s.withLockRaw(udid, fn), 0)
}

func (s *Store) withLockRaw(udid string, fn func() error) error {
	if err := validUDID(udid); err != nil {
		return err
	}
	v, err := s.checkVolume(false)
	if err != nil {
		return err
	}
	if v == nil || !exists(s.l.device(udid)) {
		return &failure.Error{Class: failure.NoBackup, Detail: fmt.Sprintf("no backups of %s at %s", udid, s.l.root), Cause: ErrNotFound}
	}
	lk, err := s.acquireLock(udid)
	if err != nil {
		return err
	}
	return errors.Join(fn(), lk.release())
}

// Delete removes a snapshot or an unpinned archive: first its record (forget, atomic), then
// its folder (prune), then it adds to the neighbours' UniqueSize the files they inherit
// from it (see deleteLocked; a full re-measure where that cannot be listed). It
// is idempotent: deleting what is already gone succeeds. The latest backup and pinned
// snapshots and archives are refused with ErrProtected (unpin first).
func (s *Store) Delete(ctx context.Context, udid, id string) error {
	return s.withLock(udid, func() error {
		neighbours, err := s.deleteLocked(ctx, udid, id)
		if err != nil {
			return err
		}
		return s.refreshAll(ctx, udid, neighbours)
	})
}

// refreshAll re-measures the snapshots named (those still recorded).
func (s *Store) refreshAll(ctx context.Context, udid string, ids map[string]bool) error {
	var errs []error
	for id := range ids {
		if exists(s.recordPath(udid, id)) {
			s.hook("delete:measure")
			errs = append(errs, s.refreshSizes(ctx, udid, id))
		}
	}
	return errors.Join(errs...)
}

// deleteLocked forgets and removes one snapshot or archive. Its neighbours in time are the
// only snapshots that can share files with it alone (a file lives in a contiguous run of
// snapshots, each a clone of the one before), so their UniqueSize grows by the files they
// held together with it only: inheritedBytes counts those before the folder goes, at the cost
// of the files the two share, and the records are updated after it has gone. Issue #16: a
// deletion no longer re-measures its neighbours in full (an inode map of every file). It
// returns the neighbours that still need a full re-measure: where the folders cannot be
// compared by listing (Windows) or the comparison failed.
func (s *Store) deleteLocked(ctx context.Context, udid, id string) (map[string]bool, error) {
	isArchive := strings.HasPrefix(id, udid+"-") && archiveRe.MatchString(id)
	if !isArchive && !validID(id) {
		return nil, fmt.Errorf("delete %q: not a snapshot ID: %w", id, ErrNotFound)
	}
	recPath, dir := s.l.record(udid, id), s.l.snapshot(udid, id)
	if isArchive {
		recPath, dir = s.l.archiveRecord(udid, id), s.l.archive(id)
	}
	rec, err := readRecord(recPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if isArchive && exists(dir) {
			return nil, fmt.Errorf("archive %s has no record, so it is not Snapback's: %w", id, ErrProtected)
		}
		return nil, os.RemoveAll(dir) // forgotten already; finish the prune
	case err != nil:
		return nil, err
	case rec.Pinned:
		return nil, fmt.Errorf("%s is pinned; unpin it first: %w", id, ErrProtected)
	}
	// Who can inherit files from it: its neighbours among the snapshots, and every archive
	// (an archive shares files with the run of snapshots around its source); an archive's
	// files can be inherited by any snapshot or other archive.
	neighbours := map[string]bool{}
	recs, err := readRecords(s.l.snapshots(udid))
	if err != nil {
		return nil, err
	}
	for i, r := range recs {
		if isArchive {
			neighbours[r.ID] = true
			continue
		}
		if r.ID != id {
			continue
		}
		if i == len(recs)-1 {
			// The newest record is the last complete backup, even if its folder is
			// not where the latest should be.
			return nil, fmt.Errorf("%s is the latest backup: %w", id, ErrProtected)
		}
		if i > 0 {
			neighbours[recs[i-1].ID] = true
		}
		if i+1 < len(recs) {
			neighbours[recs[i+1].ID] = true
		}
	}
	archives, err := s.listArchives(udid)
	if err != nil {
		return nil, err
	}
	for _, a := range archives {
		if a.ID != id && exists(s.l.archiveRecord(udid, a.ID)) {
			neighbours[a.ID] = true
		}
	}
	if n := len(recs); n > 0 && neighbours[recs[n-1].ID] {
		// The prepared folder is one more link to every file of the latest (next.go).
		if err := s.dropNext(udid); err != nil {
			return nil, err
		}
	}
	gains := map[string]int64{}
	for nb := range neighbours {
		if ctx.Err() != nil {
			break // the full re-measure at the end says so
		}
		nbDir := s.snapshotDir(udid, nb)
		if nbDir == s.l.latest(udid) && (len(recs) == 0 || nb != recs[len(recs)-1].ID) {
			continue // a record without its folder: the re-measure at the end as before
		}
		g, err := inheritedBytes(ctx, nbDir, dir)
		if err != nil {
			if !errors.Is(err, errNoDelta) {
				s.log.Warn("deletion: re-measuring a neighbour in full", "udid", udid, "snapshot", nb, "err", err)
			}
			continue
		}
		gains[nb] = g
	}
	if err := os.Remove(recPath); err != nil {
		return nil, fmt.Errorf("forget %s: %w", id, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(recPath)); err != nil {
		return nil, err
	}
	s.hook("delete:forgotten")
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("remove %s (its record is gone; the next recovery finishes): %w", dir, err)
	}
	s.log.Info("deleted snapshot", "udid", udid, "snapshot", id)
	for nb, g := range gains {
		if err := s.addUniqueSize(udid, nb, g); err != nil {
			// The deletion is done; the full re-measure at the end tries once more.
			s.log.Warn("deletion: neighbour's sizes not updated", "udid", udid, "snapshot", nb, "err", err)
			continue
		}
		delete(neighbours, nb)
	}
	return neighbours, nil
}

// recordPath is the record of snapshot or archive id.
func (s *Store) recordPath(udid, id string) string {
	if strings.HasPrefix(id, udid+"-") {
		return s.l.archiveRecord(udid, id)
	}
	return s.l.record(udid, id)
}

// snapshotDir is the folder of recorded snapshot or archive id: its own, or latest for the
// newest snapshot.
func (s *Store) snapshotDir(udid, id string) string {
	if strings.HasPrefix(id, udid+"-") {
		return s.l.archive(id)
	}
	if dir := s.l.snapshot(udid, id); exists(dir) {
		return dir
	}
	return s.l.latest(udid)
}

// addUniqueSize adds n bytes to the UniqueSize of snapshot id's record.
func (s *Store) addUniqueSize(udid, id string, n int64) error {
	if n == 0 {
		return nil
	}
	rec, err := readRecord(s.recordPath(udid, id))
	if err != nil {
		return fmt.Errorf("update sizes of %s: %w", id, err)
	}
	u := usage{Files: rec.FileCount, Total: rec.TotalSize, Unique: rec.UniqueSize + n}
	return s.setSizes(udid, id, u)
}

// setPinned rewrites a record's Pinned flag.
func (s *Store) setPinned(udid, id string, pinned bool) error {
	return s.withLock(udid, func() error {
		path := s.l.record(udid, id)
		if strings.HasPrefix(id, udid+"-") {
			path = s.l.archiveRecord(udid, id)
		}
		rec, err := readRecord(path)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s of %s: %w", id, udid, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if rec.Pinned == pinned {
			return nil
		}
		rec.Pinned = pinned
		return writeRecord(path, rec)
	})
}

// Pin protects a snapshot from retention.
func (s *Store) Pin(udid, id string) error { return s.setPinned(udid, id, true) }

// Unpin lets retention (and Delete) remove a snapshot or archive again.
func (s *Store) Unpin(udid, id string) error { return s.setPinned(udid, id, false) }

// Archive copies a snapshot ("latest" or "" for the latest backup) to an archive folder
// <UDID>-YYYYMMDD-HHMMSS beside the latest (named after the backup's time), shared by reflink
// or hard link where possible, and records it pinned. Archiving the same snapshot twice
// returns the existing archive.
//
// When the disk is too full for the copy's folders and record, the latest backup is not
// copied but renamed to the archive folder (see moveLatestToArchive), which needs no free
// block: `snapback restore` archives the latest first and must work at 0 bytes free.
func (s *Store) Archive(ctx context.Context, udid, id string) (Snapshot, error) {
	if id == "" {
		id = "latest"
	}
	var out Snapshot
	err := s.withLock(udid, func() error {
		src, err := s.Get(udid, id)
		if err != nil {
			return err
		}
		if src.IsArchive() {
			return fmt.Errorf("%s is already an archive", src.ID)
		}
		if src.Latest {
			// Its sizes are measured again below, by links (next.go).
			if err := s.dropNext(udid); err != nil {
				return err
			}
		}
		name := ArchiveName(udid, src.Time)
		recPath := s.l.archiveRecord(udid, name)
		if rec, err := readRecord(recPath); err == nil {
			rec.Path = s.l.archive(name)
			out = rec
			return nil
		}
		dst := s.l.archive(name)
		made := false
		err = func() error {
			if !exists(dst) {
				method, err := s.CloneMethod()
				if err != nil {
					return err
				}
				partial := s.l.partialArchive(name)
				if err := os.RemoveAll(partial); err != nil {
					return err
				}
				if err := s.cloneTree(ctx, src.Path, partial, method); err != nil {
					os.RemoveAll(partial)
					return fmt.Errorf("archive %s: %w", id, err)
				}
				s.hook("archive:copied")
				if err := renameDurable(partial, dst); err != nil {
					os.RemoveAll(partial)
					return fmt.Errorf("archive %s: %w", id, err)
				}
				made = true
			}
			u, err := measure(ctx, dst, true)
			if err != nil {
				return err
			}
			rec := src
			rec.ID, rec.Kind, rec.Pinned, rec.Source = name, KindArchive, true, src.ID
			rec.FileCount, rec.TotalSize, rec.UniqueSize = u.Files, u.Total, u.Unique
			rec.Latest, rec.Path = false, ""
			if err := os.MkdirAll(s.l.archives(udid), 0o755); err != nil {
				return err
			}
			if err := writeRecord(recPath, rec); err != nil {
				return err
			}
			rec.Path = dst
			out = rec
			return nil
		}()
		if err != nil && src.Latest && failure.FromOS(err).Class == failure.NoSpace {
			if made {
				// Only links to the latest's files: removing them loses nothing.
				os.RemoveAll(dst)
			}
			if exists(dst) {
				return err // an archive folder of this backup without a record: not ours to replace
			}
			s.log.Warn("disk full: moving the latest backup to the archive instead of copying it", "udid", udid, "archive", name, "err", err)
			out, err = s.moveLatestToArchive(udid, src, name)
			return err
		}
		if err != nil {
			return err
		}
		// The source now shares its files with the archive: they are no longer its alone.
		return s.refreshSizes(ctx, udid, src.ID)
	})
	return out, err
}

// moveLatestToArchive archives the latest backup src under name without a free block: the
// folder is renamed beside itself (<root>/<UDID> → <root>/<name>) and its record moved to
// archives/ (both renames within one filesystem). The device then has no latest backup: its
// next backup is a full one, which is the price of archiving on a full disk. The moved
// record keeps the snapshot's fields; listArchives reads it as the archive (and the record is
// rewritten as one when space allows).
func (s *Store) moveLatestToArchive(udid string, src Snapshot, name string) (Snapshot, error) {
	dst := s.l.archive(name)
	if err := renameDurable(src.Path, dst); err != nil {
		return Snapshot{}, fmt.Errorf("archive the latest backup by renaming it: %w", err)
	}
	from := s.l.record(udid, src.ID)
	recPath := s.l.archiveRecord(udid, name)
	err := os.MkdirAll(s.l.archives(udid), 0o755)
	if err == nil {
		err = renameDurable(from, recPath)
	}
	if err != nil {
		// No room even for the archives folder: without its record the archive is still
		// listed from its folder, and the snapshot record must go, since its folder has.
		s.log.Warn("archive record not kept on a full disk", "udid", udid, "archive", name, "err", err)
		if err := os.Remove(from); err != nil {
			return Snapshot{}, fmt.Errorf("archive the latest backup: %w", err)
		}
		atomicfile.SyncDir(filepath.Dir(from))
	}
	rec := asArchive(src, name)
	if err := writeRecord(recPath, rec); err != nil {
		s.log.Info("archive record not rewritten (disk full); it is read as the archive", "udid", udid, "archive", name)
	}
	rec.Path = dst
	return rec, nil
}

// asArchive is the record of an archive name holding what snapshot rec held.
func asArchive(rec Snapshot, name string) Snapshot {
	if rec.Kind != KindArchive {
		rec.Source = rec.ID
	}
	rec.ID, rec.Kind, rec.Pinned = name, KindArchive, true
	rec.Latest, rec.Path = false, ""
	return rec
}

// Export copies a snapshot to destParent/<UDID>/ as a standalone Apple backup folder that
// shares nothing with the store by hard link (reflinks are independent copies), so it can be
// restored from, moved or modified freely. It refuses to replace an existing folder and
// returns the new folder's path.
func (s *Store) Export(ctx context.Context, udid, id, destParent string) (string, error) {
	src, err := s.Get(udid, id)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(destParent, udid)
	if exists(dst) {
		return "", fmt.Errorf("export: %s already exists", dst)
	}
	if err := os.MkdirAll(destParent, 0o755); err != nil {
		return "", fmt.Errorf("export: %w", err)
	}
	partial := filepath.Join(destParent, "."+udid+".partial-"+randomHex(4))
	err = s.withLock(udid, func() error {
		if err := s.cloneTree(ctx, src.Path, partial, CloneReflink); err != nil {
			return err
		}
		// An export is the user's to change: give write permission back.
		return filepath.WalkDir(partial, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			return os.Chmod(p, 0o644)
		})
	})
	if err == nil {
		err = renameDurable(partial, dst)
	}
	if err != nil {
		os.RemoveAll(partial)
		return "", fmt.Errorf("export %s: %w", id, err)
	}
	return dst, nil
}

// Verify re-checks a committed snapshot or archive as Commit did: Status.plist finished,
// Info.plist names the device, Manifest.db opens read-only and every file row has its blob,
// and the folder still holds as many files as recorded. A problem is a *VerifyError.
func (s *Store) Verify(ctx context.Context, udid, id string) error {
	sn, err := s.Get(udid, id)
	if err != nil {
		return err
	}
	if _, err := s.verifyBackupExcept(ctx, sn.Path, udid, exceptionIDs(sn.Exceptions)); err != nil {
		return err
	}
	u, err := measure(ctx, sn.Path, false)
	if err != nil {
		return err
	}
	if sn.FileCount != 0 && u.Files != sn.FileCount {
		return &VerifyError{Dir: sn.Path, Problems: []string{fmt.Sprintf("holds %d files, %d when committed", u.Files, sn.FileCount)}}
	}
	return nil
}

// PruneOptions control Prune.
type PruneOptions struct {
	DryRun  bool // plan only
	Approve bool // the user approved deletions that the policy asks about
}

// Prune applies policy to udid's snapshots: Plan, then Delete for each decided deletion,
// holding the device lock so that no commit changes the latest backup in between (a
// running backup makes Prune fail with ErrLocked). Deletions that need approval are only
// carried out with Approve. It returns the decision and the IDs actually deleted. A missing
// disk is ErrDiskNotConnected: nothing is pruned because a disk went missing.
func (s *Store) Prune(ctx context.Context, udid string, policy Policy, opts PruneOptions) (Decision, []string, error) {
	var d Decision
	plan := func() error {
		all, err := s.List(udid)
		if err != nil {
			return err
		}
		var infos []SnapshotInfo
		var latestSize int64
		for _, sn := range all {
			infos = append(infos, SnapshotInfo{ID: sn.ID, Time: sn.Time, UniqueSize: sn.UniqueSize,
				Latest: sn.Latest, Archive: sn.IsArchive(), Pinned: sn.Pinned})
			if sn.Latest {
				latestSize = sn.TotalSize
			}
		}
		d = Plan(infos, latestSize, policy, s.now())
		return nil
	}
	if opts.DryRun {
		return d, nil, plan()
	}
	var deleted []string
	err := s.withLock(udid, func() error {
		if err := plan(); err != nil {
			return err
		}
		todo := d.Delete
		if opts.Approve {
			todo = append(append([]Verdict(nil), d.Delete...), d.Pending...)
		}
		// Neighbours that need a full re-measure get it once at the end, not after every
		// deletion.
		refresh := map[string]bool{}
		var err error
		for _, v := range todo {
			var nb map[string]bool
			if nb, err = s.deleteLocked(ctx, udid, v.ID); err != nil {
				break
			}
			deleted = append(deleted, v.ID)
			for id := range nb {
				refresh[id] = true
			}
		}
		return errors.Join(err, s.refreshAll(ctx, udid, refresh))
	})
	return d, deleted, err
}

// LatestForReading returns the latest backup folder of udid for a reader (files, extract,
// photos, restore). Another process's commit renames that folder for a moment; a reader
// arriving then waits for the commit to finish (up to wait, polling: the committer is
// another process) and otherwise gets class DeviceBusy ("retry in a moment") rather than
// "no backup".
func (s *Store) LatestForReading(ctx context.Context, udid string, wait time.Duration) (string, error) {
	if err := validUDID(udid); err != nil {
		return "", err
	}
	// A folder Snapback never initialised (an Apple MobileSync folder) is read as it is.
	if _, err := s.checkVolume(false); err != nil {
		return "", err
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if exists(s.l.latest(udid)) {
			return s.l.latest(udid), nil
		}
		if !exists(s.l.journal(udid)) {
			return "", &failure.Error{Class: failure.NoBackup, Detail: fmt.Sprintf("no backup of %s at %s", udid, s.l.root)}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			return "", &failure.Error{Class: failure.DeviceBusy, Detail: fmt.Sprintf("a backup of %s is being committed at %s", udid, s.l.root),
				Fix: "retry in a moment"}
		case <-tick.C:
		}
	}
}
