package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"snapback/internal/atomicfile"
	"snapback/internal/failure"
)

// DamagedFile is one file whose content differs from the hash recorded when it was written.
type DamagedFile struct {
	Path      string   // relative to the backup folder (a blob: "ab/ab12…")
	Snapshots []string // every snapshot and archive that holds this very file (hard links)
	Reason    string   // "content changed", "unreadable: …", "is a symlink"
}

// DataReport is what a content check found.
type DataReport struct {
	Files     int           // distinct files read (a file shared by many snapshots counts once)
	Bytes     int64         // bytes read
	Unindexed int           // files without a recorded hash (adopted from another tool), not checked
	Damaged   []DamagedFile // what failed
	Elapsed   time.Duration
	Complete  bool // the whole store was read (Scrub: the cycle wrapped around)
}

// blobRef is one distinct file (inode) and where it appears.
type blobRef struct {
	key   blobKey
	path  string // one path to read it through
	rel   string
	inIDs []string
}

// check reads one file and compares it with the index.
func check(r *blobRef, idx *hashIndex, buf []byte, rep *DataReport) {
	if r.key == (blobKey{}) {
		rep.Damaged = append(rep.Damaged, DamagedFile{Path: r.rel, Snapshots: r.inIDs, Reason: "is a symlink, not a file (not followed)"})
		return
	}
	want, res := idx.lookup(r.key, r.rel)
	switch res {
	case unknown:
		rep.Unindexed++
		return
	case modified:
		// Committed files are never written in place (new file + rename), so a change of
		// size or time on the same inode is damage from outside.
		rep.Damaged = append(rep.Damaged, DamagedFile{Path: r.rel, Snapshots: r.inIDs, Reason: "modified in place since it was written"})
		return
	}
	got, n, err := hashFile(r.path, buf)
	rep.Files++
	rep.Bytes += n
	switch {
	case err != nil:
		rep.Damaged = append(rep.Damaged, DamagedFile{Path: r.rel, Snapshots: r.inIDs, Reason: "unreadable: " + err.Error()})
	case got != want:
		rep.Damaged = append(rep.Damaged, DamagedFile{Path: r.rel, Snapshots: r.inIDs, Reason: "content changed since it was written"})
	}
}

// storedIndex returns udid's snapshots and archives as folders to walk and the content index
// split for streaming (the caller closes it). Without snapshots it reads nothing else.
func (s *Store) storedIndex(udid string) ([]Snapshot, []storedFolder, *bucketedIndex, error) {
	all, err := s.List(udid)
	if err != nil || len(all) == 0 {
		return all, nil, nil, err
	}
	bi, err := splitHashes(s.l.hashes(udid), s.l.device(udid), func(msg string, args ...any) {
		s.log.Warn(msg, append([]any{"udid", udid}, args...)...)
	})
	if err != nil {
		return all, nil, nil, err
	}
	folders := make([]storedFolder, len(all))
	for i, sn := range all {
		folders[i] = storedFolder{id: sn.ID, dir: sn.Path}
	}
	return all, folders, bi, nil
}

// checkRef checks one file against the part of the index that can know it.
func checkRef(r *blobRef, bi *bucketedIndex, buf []byte, rep *DataReport) error {
	idx, err := bi.index(r.rel)
	if err != nil {
		return err
	}
	check(r, idx, buf, rep)
	return nil
}

// VerifyData re-reads every file of udid's snapshots and archives (each shared file once)
// and compares it with the hash recorded at commit. Damaged files are named with every
// snapshot that holds them, and those snapshots' records are marked (Snapshot.Damaged) when
// the disk has room; damage in the latest backup makes the next backup a full one. The
// error is of class failure.Damaged when anything is damaged.
func (s *Store) VerifyData(ctx context.Context, udid string) (DataReport, error) {
	start := time.Now()
	var rep DataReport
	all, folders, bi, err := s.storedIndex(udid)
	if err != nil {
		return rep, err
	}
	if len(all) == 0 {
		return rep, &failure.Error{Class: failure.NoBackup, Detail: fmt.Sprintf("no backups of %s at %s", udid, s.l.root)}
	}
	defer bi.close()
	buf := make([]byte, 1<<20)
	live := 0
	err = walkStored(ctx, folders, "", 0, func(r *blobRef) (bool, error) {
		if live++; live%64 == 0 {
			if err := ctx.Err(); err != nil {
				return true, err
			}
		}
		return false, checkRef(r, bi, buf, &rep)
	})
	if err != nil {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		return rep, s.classify(err, 0)
	}
	s.compactHashesAfterRead(ctx, udid, bi.entries, live)
	rep.Complete, rep.Elapsed = true, time.Since(start)
	return rep, s.markDamaged(udid, rep.Damaged)
}

// markDamaged records damage in the snapshot records (best effort on a full disk: the
// report says it anyway) and returns a Damaged error naming it, nil without damage.
func (s *Store) markDamaged(udid string, damaged []DamagedFile) error {
	if len(damaged) == 0 {
		return nil
	}
	per := map[string][]string{}
	var lines []string
	for _, d := range damaged {
		for _, id := range d.Snapshots {
			per[id] = append(per[id], d.Path)
		}
		lines = append(lines, fmt.Sprintf("%s (%s; in %s)", d.Path, d.Reason, strings.Join(d.Snapshots, ", ")))
	}
	err := s.withLockRaw(udid, func() error {
		for id, paths := range per {
			path := s.l.record(udid, id)
			if strings.HasPrefix(id, udid+"-") {
				path = s.l.archiveRecord(udid, id)
			}
			rec, err := readRecord(path)
			if err != nil {
				continue
			}
			merged := map[string]bool{}
			for _, p := range append(rec.Damaged, paths...) {
				merged[p] = true
			}
			rec.Damaged = rec.Damaged[:0]
			for p := range merged {
				rec.Damaged = append(rec.Damaged, p)
			}
			sort.Strings(rec.Damaged)
			if err := writeRecord(path, rec); err != nil {
				s.log.Warn("could not mark a damaged snapshot", "udid", udid, "snapshot", id, "err", err)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrLocked) {
		s.log.Warn("could not mark damaged snapshots", "udid", udid, "err", err)
	}
	const show = 20
	detail := fmt.Sprintf("%d damaged files in the backups of %s: ", len(damaged), udid)
	if len(lines) > show {
		lines = append(lines[:show], fmt.Sprintf("and %d more", len(lines)-show))
	}
	return &failure.Error{Class: failure.Damaged, Detail: detail + strings.Join(lines, "; ")}
}

// ScrubBudget bounds one day's scrub: at most MaxBytes, and at most MaxPercent of the store's
// distinct bytes (0 = no such limit; both 0 = 1 GB).
type ScrubBudget struct {
	MaxBytes   int64
	MaxPercent float64
	// Every, if > 0, skips the scrub (reading nothing) when the previous one of this device
	// ended less than Every ago by the store's clock: the daemon may call Scrub at every
	// wake-up and still read one slice a day.
	Every time.Duration
}

// scrubState is where the last scrub stopped, per device: the next one goes on from there,
// so that a bounded daily slice re-reads the whole store every few weeks.
type scrubState struct {
	// Next is the path (inside a backup folder) of the next file to read, and NextInode its
	// inode (a name has one file per version in different snapshots). Before issue #16 the
	// position was an inode number alone; such a state (no Next) starts over at the first
	// path once.
	Next      string    `json:"next"`
	NextInode uint64    `json:"nextInode"`
	Cycle     int       `json:"cycle"` // completed passes over the store
	Updated   time.Time `json:"updated"`
}

func (l layout) scrubState(udid string) string { return filepath.Join(l.device(udid), "scrub.json") }

// Scrub re-reads the next slice of udid's stored files within budget and compares them with
// their recorded hashes, going on where the previous scrub stopped. Damage is reported and
// marked as VerifyData does. Callers run it at idle I/O priority (see RunIdle) from the
// daemon once a day.
func (s *Store) Scrub(ctx context.Context, udid string, budget ScrubBudget) (DataReport, error) {
	start := time.Now()
	var rep DataReport
	// A scrub that ran less than budget.Every ago reads nothing, and decides so first: the
	// app calls Scrub after every backup, and listing every snapshot's files and loading the
	// whole index (O(files) time and memory) only to skip would cost every incremental
	// backup more than its commit (issue #16).
	var st scrubState
	if b, err := os.ReadFile(s.l.scrubState(udid)); err == nil {
		json.Unmarshal(b, &st)
	}
	if budget.Every > 0 && !st.Updated.IsZero() && s.now().Sub(st.Updated) < budget.Every {
		return rep, nil
	}
	all, folders, bi, err := s.storedIndex(udid)
	if err != nil || len(all) == 0 {
		return rep, err
	}
	defer bi.close()
	// The store's distinct bytes, for a percentage budget, from the records: the latest
	// backup's total plus every other snapshot's and archive's own bytes (TestIncrementalSizes-
	// MatchMeasure keeps those exact). A file that only older snapshots share among themselves
	// is not counted, so the estimate errs low and a day's slice is at most the percentage.
	// It used to be a walk that stat'ed every stored file each day: about 20 of the 60 s a
	// million-file device's daily scrub added to its backup (issue #16). 100% means the whole
	// store, whatever the estimate. The live file count for compaction is the records' sum,
	// an over-count, which only makes compaction wait longer.
	var total, largest int64
	live := 0
	for _, sn := range all {
		live += sn.FileCount
		largest = max(largest, sn.TotalSize)
		if sn.Latest {
			total += sn.TotalSize
		} else {
			total += sn.UniqueSize
		}
	}
	total = max(total, largest) // no latest (archives only): at least the largest folder
	percent := budget.MaxPercent
	if percent >= 100 {
		percent = 0
	}
	limit := budget.MaxBytes
	if percent > 0 {
		if p := int64(float64(total) * percent / 100); limit == 0 || p < limit {
			limit = p
		}
	}
	switch {
	case budget.MaxBytes <= 0 && budget.MaxPercent >= 100:
		limit = 1 << 62 // the whole store
	case budget.MaxBytes <= 0 && budget.MaxPercent <= 0:
		limit = 1 << 30 // no budget given
	case limit <= 0:
		// A percentage of a tiny store rounds down to nothing: read at least one file, so
		// the slice still moves on (the loop always reads the first file of a slice).
		limit = 1
	}
	buf := make([]byte, 1<<20)
	at, atIno := st.Next, st.NextInode
	if at == "" {
		atIno = 0
	}
	next, nextIno := at, atIno
	stopped := false
	// From where the last slice stopped to the end, then from the start up to there.
	read := func(r *blobRef) (bool, error) {
		if ctx.Err() != nil || rep.Bytes >= limit || (rep.Bytes > 0 && rep.Bytes+r.key.size > limit) {
			// The slice is full (a file larger than the whole budget is read alone).
			next, nextIno, stopped = r.rel, r.key.ino, true
			return true, nil
		}
		return false, checkRef(r, bi, buf, &rep)
	}
	err = walkStored(ctx, folders, at, atIno, read)
	if err == nil && !stopped {
		next, nextIno = "", 0
		st.Cycle++
		rep.Complete = true
		if at != "" {
			err = walkStored(ctx, folders, "", 0, func(r *blobRef) (bool, error) {
				if !refBefore(r.rel, r.key.ino, at, atIno) {
					next, nextIno = at, atIno // back where this slice began: all read once
					return true, nil
				}
				return read(r)
			})
		}
	}
	if err != nil && ctx.Err() == nil {
		return rep, s.classify(err, 0)
	}
	s.compactHashesAfterRead(ctx, udid, bi.entries, live)
	st.Next, st.NextInode = next, nextIno
	if ctx.Err() == nil {
		// Only a slice that ran its course is the day's: one stopped early (a backup waits,
		// or the program quits) goes on at the next chance, from where it stopped.
		st.Updated = s.now().UTC()
	}
	if b, err := json.Marshal(st); err == nil {
		if err := atomicfile.WriteFile(s.l.scrubState(udid), b, 0o644); err != nil {
			s.log.Warn("scrub position not saved; the next scrub repeats this slice", "udid", udid, "err", err)
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, s.markDamaged(udid, rep.Damaged)
}
