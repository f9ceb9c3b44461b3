package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/zeebo/xxh3"

	"snapback/internal/backupfmt"
)

// Issue #16: a commit's work scales with what the run changed, not with the backup.
//
// The staging folder starts as a hard-link clone of the latest backup, and the engine only
// ever adds files by writing a new file and renaming it over the name. So a staged file that
// still has latest's inode number under the same name is latest's file: verified at the
// previous commit, read-only, indexed. diffTree finds the rest from the two trees' directory
// listings (getdents gives each entry's inode number: no stat per file), and the commit
// verifies, marks read-only, measures and indexes only those.
//
// Sizes follow from the previous latest's record. Every inode appears once per backup folder
// (nothing inside one backup is hard-linked to another name), so, with W the files this run
// wrote and R the files of the previous latest that staging no longer has (removed, or
// replaced by a new file of the same name):
//
//	new latest:    FileCount = prev.FileCount − |R| + |W|
//	               TotalSize = prev.TotalSize − size(R) + size(W)
//	               UniqueSize = size of W with one link (every other file is shared with prev)
//	previous one:  FileCount and TotalSize unchanged (its folder is)
//	               UniqueSize = size of R with one link (all its other files are in the new latest)
//
// Older snapshots keep their sizes: the new latest shares nothing with them that the
// previous latest did not. TestIncrementalSizesMatchMeasure checks this against measure().
//
// measure() stays the way for everything else: a full or first backup, a copy or reflink
// clone (reflinks give every file a new inode, so inode numbers say nothing), a store
// without a previous record and adopting a folder. Deletions add to the neighbours' UniqueSize
// what they inherit (inheritedBytes, see deleteLocked) and re-measure in full only on Windows.

// errNoDelta says this system cannot list directories with inode numbers.
var errNoDelta = errors.New("directory listings without inode numbers")

// blobStat is a written file as stat'ed once at commit.
type blobStat struct {
	rel   string // slash-separated, relative to the backup folder
	ino   uint64
	size  int64
	mtime int64 // Unix nanoseconds
	nlink uint64
	perm  uint32
}

// writtenFile is a file of a fresh staging folder as the commit's one listing pass sees it
// (walkWritten): its stat, plus what the pass already knows, so that the sink works nothing
// out a second time.
type writtenFile struct {
	blobStat
	isBlob bool         // its name is a blob's (xx/<fileID>)
	blob   uint64       // the idKey of that name (which may be 0)
	sum    xxh3.Uint128 // the sum streamed while it was uploaded, when summed
	summed bool         // the streamed table vouched for this file (sumTable.landed)
}

// delta is what a run changed in its staging folder against the latest backup.
type delta struct {
	written       []blobStat // files new in staging (a new inode under a new or existing name)
	removedFiles  int        // files of latest that staging no longer has (removed or replaced)
	removedBytes  int64
	removedUnique int64    // of those, the bytes no other folder links: the previous latest's own now
	present       []uint64 // idKey of every blob in staging, sorted
	// sink, when set, takes each written file instead of written and present (a fresh
	// commit's one pass, fullcommit.go: nothing per file is kept here).
	sink func(writtenFile) error
	// streamed, with sink, may vouch for a file's stat (sumTable.landed).
	streamed sumTable
	// queue, when set, collects the top-level folders for diffQueued instead of comparing
	// them in place (diffTree).
	queue *[]subdir
	// keys, when set, takes the blob keys instead of present, a folder at a time (batch):
	// the workers of diffQueued share it.
	keys  *sharedKeys
	batch []uint64
}

// sharedKeys is the blob keys of a backup, filled by several goroutines.
type sharedKeys struct {
	mu   sync.Mutex
	keys []uint64
}

func (k *sharedKeys) add(batch []uint64) {
	k.mu.Lock()
	k.keys = append(k.keys, batch...)
	k.mu.Unlock()
}

// subdir is a top-level folder queued by diffDir for diffQueued.
type subdir struct{ sDir, lDir, rel string }

// idKey is the first 64 bits of a fileID. fileIDs are SHA-1 sums, so two distinct ones share
// it with probability 2^-64 per pair: a set of these keys stands for the set of a million
// blob names in 8 MB instead of a map of strings (~100 MB).
func idKey(id string) uint64 {
	var v uint64
	for i := 0; i < 16 && i < len(id); i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		}
		v = v<<4 | uint64(c&15)
	}
	return v
}

func (d *delta) has(fileID string) bool {
	_, ok := slices.BinarySearch(d.present, idKey(fileID))
	return ok
}

// lacking returns the keys (sorted here) that no blob in staging has.
func (d *delta) lacking(keys []uint64) map[uint64]bool {
	slices.Sort(keys)
	var lost map[uint64]bool
	i := 0
	for _, k := range keys {
		for i < len(d.present) && d.present[i] < k {
			i++
		}
		if i == len(d.present) || d.present[i] != k {
			if lost == nil {
				lost = map[uint64]bool{}
			}
			lost[k] = true
		}
	}
	return lost
}

// maxConcurrentVerify is the largest backup (in files) whose commit compares the listings
// and reads Manifest.db's rows at once (diffVerify; verifyFresh for a full backup). The row
// pass then keeps 8 bytes per row until the listings are done (16 in a full backup's, which
// also has each row's size to compare); above this it runs after them, as the million-file
// commit must stay within its memory bound (issue #16: peak RSS under 64 MB).
const maxConcurrentVerify = 300_000

// diffVerify compares staging with latest (diffTree) and verifies the staging backup
// (verifyBackupDelta) at once, for a commit whose staging folder is a hard-link clone of
// latest. The two took about the same time (0.24 s of mostly kernel time for the listings,
// 0.29 s of pure-Go SQLite for the row pass, per 100,000 files; the row pass now reads the
// b-tree itself, 0.03-0.05 s) and the commit is the only
// work left once the device is done, so both cores are free for it. d is nil when the
// listings have no inode numbers (errNoDelta); the backup was then verified in full.
func (s *Store) diffVerify(ctx context.Context, dir, latest, udid string, except map[string]bool, files int) (*delta, backupFacts, error) {
	// "commit:delta" marks the delta known (crash tests, BenchmarkCommitIncremental's phases).
	list := func() (*delta, error) {
		d, err := s.diffTree(ctx, dir, latest, files)
		if err == nil {
			s.hook("commit:delta")
		}
		return d, err
	}
	if files > maxConcurrentVerify || s.opts.serialVerify {
		d, err := list()
		if errors.Is(err, errNoDelta) {
			d = nil
		} else if err != nil {
			return nil, backupFacts{}, err
		}
		facts, err := s.verifyBackupDelta(ctx, dir, udid, except, d)
		return d, facts, err
	}
	pending := beside(list) // awaited below on every path
	facts, verr := s.verifyBackupWith(ctx, dir, udid, func(dbPath string, facts *backupFacts, add func(string, ...any)) error {
		return s.verifyRowsDelta(ctx, dir, dbPath, facts, add, except, nil, pending)
	})
	d, err := pending()
	switch {
	case errors.Is(err, errNoDelta):
		facts, err = s.verifyBackupDelta(ctx, dir, udid, except, nil)
		return nil, facts, err
	case err != nil:
		return nil, facts, err
	}
	return d, facts, verr
}

// beside runs f on a goroutine and returns the wait for its result, which may be called any
// number of times. The caller owns the goroutine: it must call wait on every path.
func beside[T any](f func() (T, error)) (wait func() (T, error)) {
	done := make(chan struct{})
	var v T
	var err error
	go func() {
		defer close(done)
		v, err = f()
	}()
	return func() (T, error) {
		<-done
		return v, err
	}
}

// blobFileID returns the fileID of a written file if it is a blob (xx/<fileID>).
func blobFileID(rel string) (string, bool) {
	dir, name, ok := strings.Cut(rel, "/")
	if !ok || len(dir) != 2 || !backupfmt.ValidFileID(name) || name[:2] != dir {
		return "", false
	}
	return name, true
}

// verifyRowsDelta is verifyRows for a staging folder whose changes d describes: every file
// row's blob must be present (from the listings: no stat), and blobs this run wrote must have
// their row's size (one primary-key lookup each). Unchanged blobs had their size checked at
// the commit that wrote them and are read-only hard links since. The row pass reads fileID
// and flags only (Manifest.db EachID): decoding every row's MBFile was most of the old
// verify's time.
//
// With d nil the listings are still being compared (diffVerify): the row pass keeps the file
// rows' keys (8 bytes a row), and pending yields d once it is ready.
func (s *Store) verifyRowsDelta(ctx context.Context, dir, dbPath string, facts *backupFacts, add func(string, ...any), except map[string]bool, d *delta, pending func() (*delta, error)) error {
	db, err := backupfmt.OpenManifestDB(dbPath)
	if err != nil {
		add("Manifest.db: %v", err)
		return nil
	}
	defer db.Close()
	bad := 0
	// checkExcepted is the old, stat-based check for the few files the device could not read.
	checkExcepted := func(id string) (bool, error) {
		r, err := db.Get(ctx, id)
		if err != nil {
			return false, err
		}
		fi, err := os.Lstat(backupfmt.BlobPath(dir, id))
		if errors.Is(err, fs.ErrNotExist) || err == nil && (!fi.Mode().IsRegular() || fi.Size() != r.File.Size) {
			facts.Excepted = append(facts.Excepted, id)
			return true, nil
		}
		return false, err
	}
	missing := func(id string) {
		if bad++; bad <= maxProblems {
			if r, err := db.Get(ctx, id); err == nil {
				add("blob %s (%s-%s) is missing", id, r.Domain, r.RelativePath)
				return
			}
		}
		add("blob %s is missing", id)
	}
	var keys []uint64 // the file rows' keys while d is pending
	err = db.EachID(ctx, func(id string, flags int64) error {
		if !s.fileRow(facts, id, flags, nil, &bad, add) {
			return nil
		}
		if except[id] {
			if ok, err := checkExcepted(id); ok || err != nil {
				return err
			}
		}
		if d == nil {
			keys = append(keys, idKey(id))
		} else if !d.has(id) {
			missing(id)
		}
		return nil
	})
	if err := rowPassFailed(ctx, err, add); err != nil {
		return err
	}
	if d == nil {
		if d, err = pending(); err != nil {
			return err
		}
		if lost := d.lacking(keys); len(lost) > 0 {
			// Only keys were kept: find the rows behind them again, for the message.
			err := db.EachID(ctx, func(id string, flags int64) error {
				if flags == backupfmt.FlagFile && lost[idKey(id)] {
					missing(id)
				}
				return nil
			})
			if err := rowPassFailed(ctx, err, add); err != nil {
				return err
			}
		}
	}
	// The written files' sizes against their rows, looked up together (SizesOf). A blob
	// without a row is left over and harmless (the device wrote it and then dropped the row).
	ids := make([]string, 0, len(d.written))
	sizes := make(map[string]int64, len(d.written))
	for _, w := range d.written {
		if id, ok := blobFileID(w.rel); ok && !except[id] {
			ids = append(ids, id)
			sizes[id] = w.size
		}
	}
	err = db.SizesOf(ctx, ids, func(id string, flags, size int64, rowErr error) error {
		switch {
		case rowErr != nil:
			add("Manifest.db: %v", rowErr)
		case flags == backupfmt.FlagFile && size != sizes[id]:
			bad++
			// The row again, whole, for the message: only for a file found wrong.
			if r, err := db.Get(ctx, id); err == nil {
				add("blob %s (%s-%s) has %d bytes, Manifest.db says %d", id, r.Domain, r.RelativePath, sizes[id], size)
			} else {
				add("blob %s has %d bytes, Manifest.db says %d", id, sizes[id], size)
			}
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

// apply marks the written files read-only (committed content is immutable) and returns the
// sizes of the new latest and of the previous latest (see the comment at the top).
func (d *delta) apply(ctx context.Context, dir string, prev Snapshot) (latest, previous usage, err error) {
	latest = usage{Files: prev.FileCount - d.removedFiles + len(d.written), Total: prev.TotalSize - d.removedBytes}
	for i, w := range d.written {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return usage{}, usage{}, err
			}
		}
		if w.perm&0o222 != 0 {
			if err := os.Chmod(filepath.Join(dir, filepath.FromSlash(w.rel)), fs.FileMode(w.perm&^0o222)); err != nil {
				return usage{}, usage{}, fmt.Errorf("mark %s read-only: %w", w.rel, err)
			}
		}
		latest.Total += w.size
		if w.nlink <= 1 {
			latest.Unique += w.size
		}
	}
	previous = usage{Files: prev.FileCount, Total: prev.TotalSize, Unique: d.removedUnique}
	return latest, previous, nil
}

// indexWritten hashes the written files (or takes the sum the engine computed while they
// streamed in) and appends them to the content index.
func (s *Store) indexWritten(ctx context.Context, udid, dir string, d *delta, streamed sumTable) error {
	entries := make([]hashEntry, 0, len(d.written))
	if err := d.hashWritten(ctx, dir, streamed, func(e hashEntry) { entries = append(entries, e) }); err != nil {
		return err
	}
	return appendHashes(s.l.hashes(udid), entries)
}

// hashWritten passes emit the index entry of every file written this run: the sum the engine
// computed while it streamed in, else the file's hash read from dir.
func (d *delta) hashWritten(ctx context.Context, dir string, streamed sumTable, emit func(hashEntry)) error {
	buf := make([]byte, 1<<20)
	for i, w := range d.written {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		k := blobKey{ino: w.ino, size: w.size, mtime: w.mtime}
		sum, ok := streamed.lookup(k)
		if !ok {
			var err error
			if sum, _, err = hashFile(filepath.Join(dir, filepath.FromSlash(w.rel)), buf); err != nil {
				return fmt.Errorf("index content of %s: %w", w.rel, err)
			}
		}
		emit(hashEntry{key: k, sum: sum, rel: w.rel})
	}
	return nil
}

// compactHashesIfStale compacts the content index at commit when it has grown beyond twice
// the most entries the store could hold live: the sum of every snapshot's file count (an
// over-count, shared files count once per snapshot) plus the new latest's, at hashLineBytes
// or more per line. That takes one stat; the scrub, which counts the live files anyway,
// compacts at the tighter bound of twice the live count. Costs a walk of every snapshot when
// it fires.
func (s *Store) compactHashesIfStale(ctx context.Context, udid string, recs []Snapshot, latest usage, staged string) error {
	fi, err := os.Stat(s.l.hashes(udid))
	if err != nil {
		return nil // no index to compact; the next commit or scrub deals with it
	}
	archives, err := s.listArchives(udid) // records only, no folder is read
	if err != nil {
		return err
	}
	most := int64(latest.Files)
	for _, sn := range append(archives, recs...) {
		most += int64(sn.FileCount)
	}
	if fi.Size()/hashLineBytes <= 2*most+1024 {
		return nil
	}
	all, err := s.List(udid)
	if err != nil {
		return err
	}
	return s.compactHashes(ctx, udid, append(snapshotDirs(all), staged))
}

func snapshotDirs(list []Snapshot) []string {
	dirs := make([]string, 0, len(list)+1)
	for _, sn := range list {
		dirs = append(dirs, sn.Path)
	}
	return dirs
}

// compactHashesAfterRead compacts the index when a full read of it (scrub, verify --data)
// found more than twice as many entries as live files. It takes the device lock and skips
// (it is an optimisation) when a backup holds it.
func (s *Store) compactHashesAfterRead(ctx context.Context, udid string, entries, live int) {
	if entries <= 2*live+1024 {
		return
	}
	err := s.withLockRaw(udid, func() error {
		all, err := s.List(udid)
		if err != nil {
			return err
		}
		return s.compactHashes(ctx, udid, snapshotDirs(all))
	})
	if err != nil {
		s.log.Info("content index not compacted", "udid", udid, "err", err)
	}
}
