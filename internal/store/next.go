package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"snapback/internal/atomicfile"
)

// The next backup's starting folder, prepared ahead (issue #16).
//
// A snapshot is a complete Apple-format folder, so every backup needs one directory entry per
// file of the device: with hard links, one linkat each (15-25 µs of kernel time on ext4; a
// 100,000-file device costs 1.5-2 s of system time, a 1,300,000-file one half a minute, and
// on a NAS disk as many journalled metadata writes). No layout of full folders avoids it:
// directories cannot be hard-linked, and at 1% daily churn every one of the 256 prefix
// folders changes. Reverse-delta snapshots (only the latest complete) would, but every
// snapshot could then no longer be handed to Finder or idevicebackup2 as it is.
//
// What can be chosen is when that cost is paid. Begin used to clone the latest backup while
// the device worked, competing with the transfer for CPU and disk. PrepareNext pays it
// right after a backup instead, at idle priority, while nothing waits: Begin then only
// renames the prepared folder into staging, and the backup's own work is what the device
// changed. The total work is the same; it moves off the time the device is connected.
//
// The prepared folder, Snapback.Versions/<UDID>/next/<UDID>/, is a hard-link clone of the
// latest backup, and next/prepared.json (written after the clone is flushed) names the
// latest record and its fingerprint. It is used only when both still match: anything that
// changes the latest (a new commit, another program backing up into it, damage found by the
// scrub, a forced full backup) makes it stale, and it is removed. Without the marker (a crash
// while preparing) recovery removes it.
//
// Its links are one more link to every file of the latest backup. Sizes are counted by
// links (a snapshot's own bytes are its files whose every link is inside it), so the
// operations that count the latest's links against another folder's, deleting the snapshot
// next to the latest or an archive, and archiving the latest, remove the prepared folder
// first (dropNext); the next backup, or the next PrepareNext, makes it again. A commit never
// sees it: Begin has taken it by then.

const (
	nextDirName    = "next"
	nextMarkerName = "prepared.json"
)

func (l layout) next(udid string) string       { return filepath.Join(l.device(udid), nextDirName) }
func (l layout) nextBackup(udid string) string { return filepath.Join(l.next(udid), udid) }
func (l layout) nextMarker(udid string) string { return filepath.Join(l.next(udid), nextMarkerName) }

// nextMarker is what prepared.json says: the prepared folder is a complete clone of the latest
// backup recorded as Latest, whose folder had Fingerprint.
type nextMarker struct {
	Latest      string `json:"latest"`
	Fingerprint string `json:"fingerprint"`
}

// PrepareNext clones the latest backup of udid into the folder the next backup will start
// from, so that the next Begin does not clone (see above). It returns whether it made one:
// false when there is nothing to prepare (no latest backup, one already prepared, the next
// backup will be a full one) or when the destination does not share files by hard link
// (a reflink or copy clone costs more than it saves kept around). The caller runs it at idle
// priority (RunIdle); the clone's workers set their own. It holds the device lock, so a
// backup started meanwhile by another process gets ErrLocked (the daemon queues its own).
// Cancelling ctx stops it at once and leaves an unmarked folder, which is never used and
// which the next recovery removes.
func (s *Store) PrepareNext(ctx context.Context, udid string) (made bool, err error) {
	err = s.withLock(udid, func() error {
		m, err := s.CloneMethod()
		if err != nil {
			return err
		}
		want, ok, err := s.nextWanted(udid)
		if err != nil {
			return err
		}
		if !ok || m != CloneHardlink || s.opts.fullScan {
			return s.dropNext(udid)
		}
		if have, ok := s.readNext(udid); ok && have == want {
			return nil
		}
		if err := s.dropNext(udid); err != nil {
			return err
		}
		if err := s.makeNext(ctx, udid, want); err != nil {
			// Cancelled (a shutdown): leave the unmarked folder to the next recovery rather
			// than delay the exit by unlinking what was linked so far.
			if ctx.Err() == nil {
				if rerr := os.RemoveAll(s.l.next(udid)); rerr != nil {
					s.log.Warn("remove an unfinished prepared folder", "udid", udid, "err", rerr)
				}
			}
			return fmt.Errorf("prepare the next backup of %s: %w", udid, err)
		}
		made = true
		return nil
	})
	return made, err
}

// nextWanted says what a prepared folder must clone now: the newest record, if its folder is
// the latest one, it is undamaged and no other program has backed up into it since.
func (s *Store) nextWanted(udid string) (nextMarker, bool, error) {
	recs, err := readRecords(s.l.snapshots(udid))
	if err != nil || len(recs) == 0 {
		return nextMarker{}, false, err
	}
	last := recs[len(recs)-1]
	latest := s.l.latest(udid)
	if !exists(latest) || exists(s.l.snapshot(udid, last.ID)) || len(last.Damaged) > 0 {
		return nextMarker{}, false, nil
	}
	fp := fingerprint(latest)
	if last.Fingerprint != "" && fp != last.Fingerprint {
		return nextMarker{}, false, nil // the next Begin adopts what is there
	}
	return nextMarker{Latest: last.ID, Fingerprint: fp}, true, nil
}

// makeNext clones the latest backup into next/, flushes it, and then marks it prepared for
// want. The top-level folders are linked by cloneWorkers goroutines, each at idle priority:
// linking is kernel work that parallelises across directories, and a second core left idle
// by the backup made the folder ready about 30% sooner (100,000 files: 1.8-2.0 s before,
// 1.4-1.5 s after; issue #16), which is how long the command stays up after its result and
// the daemon holds the device's next run.
func (s *Store) makeNext(ctx context.Context, udid string, want nextMarker) error {
	if err := os.Mkdir(s.l.next(udid), 0o755); err != nil {
		return err
	}
	s.hook("next:begin")
	if err := s.cloneTreeAt(ctx, s.l.latest(udid), s.l.nextBackup(udid), CloneHardlink, s.cloneWorkers(), true); err != nil {
		return err
	}
	s.hook("next:cloned")
	// The marker must not become durable before the links it vouches for.
	if err := atomicfile.SyncFS(s.l.next(udid)); err != nil {
		return err
	}
	b, _ := json.Marshal(want)
	if err := atomicfile.WriteFile(s.l.nextMarker(udid), b, 0o644); err != nil {
		return err
	}
	s.hook("next:marked")
	return nil
}

// readNext returns what a complete prepared folder clones; false if there is none (no folder,
// no marker: a crash while preparing, or an unreadable one).
func (s *Store) readNext(udid string) (nextMarker, bool) {
	b, err := os.ReadFile(s.l.nextMarker(udid))
	if err != nil {
		return nextMarker{}, false
	}
	var m nextMarker
	if json.Unmarshal(b, &m) != nil || m.Latest == "" || !exists(s.l.nextBackup(udid)) {
		return nextMarker{}, false
	}
	return m, true
}

// dropNext removes the prepared folder, if any. The caller holds the device lock.
func (s *Store) dropNext(udid string) error {
	dir := s.l.next(udid)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	s.hook("next:drop")
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove the prepared folder %s: %w", dir, err)
	}
	return nil
}

// dropStaleNext removes a prepared folder that no longer clones the latest backup as it is
// (or was never finished), and says whether one is left. Begin calls it before anything
// counts the latest's links (adopting another program's backup measures the folder).
func (s *Store) dropStaleNext(udid string) (bool, error) {
	if !exists(s.l.next(udid)) {
		return false, nil
	}
	have, ok := s.readNext(udid)
	if ok {
		want, wok, err := s.nextWanted(udid)
		if err != nil {
			return false, err
		}
		if wok && want == have {
			return true, nil
		}
	}
	s.log.Info("removing a prepared folder that no longer matches the latest backup", "udid", udid)
	return false, s.dropNext(udid)
}

// takeNext makes the prepared folder the run's staging backup: one rename. The caller made
// the staging folder and checked that the prepared one clones latest.
func (s *Store) takeNext(udid string) error {
	if err := os.Rename(s.l.nextBackup(udid), s.l.stagingBackup(udid)); err != nil {
		return fmt.Errorf("take the prepared folder: %w", err)
	}
	s.hook("begin:next-taken")
	// A crash before this leaves the marker without its folder: readNext ignores it and
	// the next recovery or PrepareNext removes it.
	return s.dropNext(udid)
}
