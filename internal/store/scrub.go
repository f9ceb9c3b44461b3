package store

import (
	"context"
	"encoding/json"
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

// collect walks the folders of sns and groups their regular files by inode.
func collect(ctx context.Context, sns []Snapshot) ([]*blobRef, error) {
	byKey := map[blobKey]*blobRef{}
	var out []*blobRef
	for _, sn := range sns {
		err := filepath.WalkDir(sn.Path, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 {
				rel, _ := filepath.Rel(sn.Path, path)
				out = append(out, &blobRef{path: path, rel: filepath.ToSlash(rel), inIDs: []string{sn.ID}})
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			k, ok := keyOf(fi)
			if !ok {
				return nil
			}
			if r := byKey[k]; r != nil {
				r.inIDs = append(r.inIDs, sn.ID)
				return nil
			}
			rel, _ := filepath.Rel(sn.Path, path)
			r := &blobRef{key: k, path: path, rel: filepath.ToSlash(rel), inIDs: []string{sn.ID}}
			byKey[k] = r
			out = append(out, r)
			return ctx.Err()
		})
		if err != nil {
			return nil, fmt.Errorf("list files of %s: %w", sn.ID, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key.ino < out[j].key.ino })
	return out, nil
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

// storedFiles returns udid's snapshots and archives, the content hashes recorded at commit
// and every stored file once: what VerifyData and Scrub compare. Without snapshots it reads
// nothing else.
func (s *Store) storedFiles(ctx context.Context, udid string) ([]Snapshot, *hashIndex, []*blobRef, error) {
	all, err := s.List(udid)
	if err != nil || len(all) == 0 {
		return all, nil, nil, err
	}
	idx, err := readHashes(s.l.hashes(udid))
	if err != nil {
		return all, nil, nil, err
	}
	refs, err := collect(ctx, all)
	if err != nil {
		return all, nil, nil, s.classify(err, 0)
	}
	return all, idx, refs, nil
}

// VerifyData re-reads every file of udid's snapshots and archives (each shared file once)
// and compares it with the hash recorded at commit. Damaged files are named with every
// snapshot that holds them, and those snapshots' records are marked (Snapshot.Damaged) when
// the disk has room; damage in the latest backup makes the next backup a full one. The
// error is of class failure.Damaged when anything is damaged.
func (s *Store) VerifyData(ctx context.Context, udid string) (DataReport, error) {
	start := time.Now()
	var rep DataReport
	all, idx, refs, err := s.storedFiles(ctx, udid)
	if err != nil {
		return rep, err
	}
	if len(all) == 0 {
		return rep, &failure.Error{Class: failure.NoBackup, Detail: fmt.Sprintf("no backups of %s at %s", udid, s.l.root)}
	}
	buf := make([]byte, 1<<20)
	for i, r := range refs {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
		}
		check(r, idx, buf, &rep)
	}
	s.compactHashesAfterRead(ctx, udid, idx.lines, len(refs))
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
	all, idx, refs, err := s.storedFiles(ctx, udid)
	if err != nil || len(all) == 0 {
		return rep, err
	}
	var total int64
	for _, r := range refs {
		total += r.key.size
	}
	limit := budget.MaxBytes
	if budget.MaxPercent > 0 {
		if p := int64(float64(total) * budget.MaxPercent / 100); limit == 0 || p < limit {
			limit = p
		}
	}
	switch {
	case budget.MaxBytes <= 0 && budget.MaxPercent <= 0:
		limit = 1 << 30 // no budget given
	case limit <= 0:
		// A percentage of a tiny store rounds down to nothing: read at least one file, so
		// the slice still moves on (the loop always reads the first file of a slice).
		limit = 1
	}
	first := sort.Search(len(refs), func(i int) bool { return refs[i].key.ino >= st.NextInode })
	buf := make([]byte, 1<<20)
	next := st.NextInode
	for n := 0; n < len(refs) && rep.Bytes < limit; n++ {
		if err := ctx.Err(); err != nil {
			break
		}
		i := (first + n) % len(refs)
		if rep.Bytes > 0 && rep.Bytes+refs[i].key.size > limit {
			break // the slice is full; a file larger than the whole budget is read alone
		}
		check(refs[i], idx, buf, &rep)
		next = refs[i].key.ino + 1
		if i == len(refs)-1 {
			next = 0
			st.Cycle++
			rep.Complete = true
		}
	}
	s.compactHashesAfterRead(ctx, udid, idx.lines, len(refs))
	st.NextInode, st.Updated = next, s.now().UTC()
	if b, err := json.Marshal(st); err == nil {
		if err := atomicfile.WriteFile(s.l.scrubState(udid), b, 0o644); err != nil {
			s.log.Warn("scrub position not saved; the next scrub repeats this slice", "udid", udid, "err", err)
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, s.markDamaged(udid, rep.Damaged)
}
