package store

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"snapback/internal/atomicfile"
	"snapback/internal/backupfmt"
	"snapback/internal/offheap"
)

// Issue #16: a full backup's commit (`backup --full`, and every first backup) costs one pass
// over what the run wrote and keeps 16 bytes a file (beside the 48-byte sums the engine
// streamed, streamedHashes).
//
// The staging folder of a full run starts empty, so every file in it was written by this run.
// listFresh lists it one directory at a time and takes each file's stat once (size, inode,
// mtime, links, mode): from the fstat its upload took, where the streamed sums vouch for it
// (sumTable.landed: nearly every blob), else by asking the filesystem. The sizes, the content
// index and the verify all use that one stat. The index
// lines are appended during the pass, with the sums the engine computed while the bytes
// streamed in (only the files it did not hash are read), and the pass keeps one 16-byte key
// and size per blob for the verify. Before, the pass kept every file's stat and path until
// the end of the commit: with the streamed sums, a full backup of 1,000,000 files peaked at
// over 500 MB.
//
// The row pass over Manifest.db (6 µs a row through pure-Go SQLite, the largest part of the
// commit's user time; about 1.2 µs read from the b-tree, backupfmt's filewalk.go) runs beside the listing pass, which is mostly kernel time, as the incremental
// commit's does (diffVerify); above maxConcurrentVerify files it runs after it, comparing
// each row at once instead of keeping the rows' keys, to stay within the memory bound.
//
// Index lines are written before the verify has its answer. If it refuses the backup (or the
// pass fails), the index is truncated back to its length before the pass (indexMark). A crash
// in between leaves them: entries of files never committed, keyed by inode, size and mtime,
// which no committed file can match and compaction drops (as appendHashesFrom allows).
//
// Sizes: when every staged file has one link (a fresh full backup: nothing in it is shared
// with any snapshot), Files, Total and Unique are the count and byte sum of the written
// files, Unique == Total, and the previous latest's sizes do not change (no link count of its
// files changed), so the journal carries them and recovery need not measure it. A file with
// more links (never written by the engine, but nothing forbids it) falls back to measure().
// TestFullCommitSizesMatchMeasure checks this against measure().

type keySize struct {
	key  uint64
	size int64
}

func compareKeySize(a, b keySize) int { return cmp.Compare(a.key, b.key) }

// freshTally is what the listing pass of a fresh commit keeps.
type freshTally struct {
	u      usage
	shared bool      // a file has more than one link: its sizes come from measure()
	blobs  []keySize // every blob's key and size, sorted once the pass is done; in mem
	// mem holds blobs outside the Go heap (16 bytes a file, which on the heap cost about
	// twice that in RSS), until the row pass is done with them (freeBlobs).
	mem offheap.Mem
}

// freeBlobs releases blobs once the verify is done with them, or once the pass failed
// (nothing frees the mapping otherwise, for the life of the process); t may be nil.
func (t *freshTally) freeBlobs() {
	if t == nil {
		return
	}
	t.blobs = nil
	t.mem.Free()
}

// listFresh lists dir, a staging folder that started empty, passing each file's content
// index entry to emit: the sum the engine computed while it streamed in, else its hash read
// from dir. files (about how many the backup holds) sizes the blob keys' one allocation.
//
// A file not yet read-only is marked so here, before the verify answers (the engine creates
// uploads 0444, so this is rare, but a filesystem that ignores modes reports every file
// writable, and keeping their paths for later would cost what this pass saves). That is
// harmless if the backup is refused: the device is done writing, nothing writes a staged file
// in place, and the staging folder is removed whole.
func (s *Store) listFresh(ctx context.Context, dir string, files int, streamed sumTable, emit func(hashEntry)) (*freshTally, error) {
	t := &freshTally{}
	t.blobs = offheap.Alloc[keySize](&t.mem, files+files/16+64)
	var buf []byte
	err := s.walkWritten(ctx, dir, streamed, func(w writtenFile) error {
		t.u.Files++
		t.u.Total += w.size
		if w.nlink > 1 {
			t.shared = true
		} else {
			t.u.Unique += w.size
		}
		if w.perm&0o222 != 0 {
			if err := os.Chmod(filepath.Join(dir, filepath.FromSlash(w.rel)), fs.FileMode(w.perm&^0o222)); err != nil {
				return fmt.Errorf("mark %s read-only: %w", w.rel, err)
			}
		}
		if w.isBlob {
			t.blobs = append(t.blobs, keySize{w.blob, w.size})
		}
		k := blobKey{ino: w.ino, size: w.size, mtime: w.mtime}
		sum, ok := w.sum, w.summed
		if !ok {
			sum, ok = streamed.lookup(k)
		}
		if !ok {
			if t.u.Files%64 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if buf == nil {
				buf = make([]byte, 1<<20)
			}
			var err error
			if sum, _, err = hashFile(filepath.Join(dir, filepath.FromSlash(w.rel)), buf); err != nil {
				return fmt.Errorf("index content of %s: %w", w.rel, err)
			}
		}
		emit(hashEntry{key: k, sum: sum, rel: w.rel})
		return nil
	})
	if err != nil {
		t.freeBlobs()
		return nil, err
	}
	slices.SortFunc(t.blobs, compareKeySize)
	return t, nil
}

// verifyFresh verifies dir, the staging folder of a full backup, and adds its files to the
// content index, in one listing pass beside the row pass (see the comment at the top). files
// is about how many files the backup holds. When the backup is refused (or the pass fails),
// the index lines the pass wrote are taken back.
func (s *Store) verifyFresh(ctx context.Context, dir, udid string, except map[string]bool, files int, streamed sumTable) (backupFacts, *freshTally, error) {
	mark := markIndex(s.l.hashes(udid))
	created := false
	facts, t, err := s.verifyFreshPasses(ctx, dir, udid, except, files, func() (t *freshTally, err error) {
		created, err = s.indexFresh(ctx, udid, func(emit func(hashEntry)) error {
			var err error
			t, err = s.listFresh(ctx, dir, files, streamed, emit)
			return err
		})
		return t, err
	})
	if err != nil {
		if rerr := mark.rollback(created); rerr != nil {
			s.log.Warn("content index: the refused backup's lines stay (compaction drops them)", "udid", udid, "err", rerr)
		}
	}
	return facts, t, err
}

// verifyFreshPasses runs list (the listing pass) and the row pass.
func (s *Store) verifyFreshPasses(ctx context.Context, dir, udid string, except map[string]bool, files int, list func() (*freshTally, error)) (backupFacts, *freshTally, error) {
	if files > maxConcurrentVerify || s.opts.serialVerify {
		t, err := list()
		if err != nil {
			t.freeBlobs() // listed, then the index write failed
			return backupFacts{}, nil, err
		}
		facts, err := s.verifyBackupWith(ctx, dir, udid, func(dbPath string, facts *backupFacts, add func(string, ...any)) error {
			return s.verifyRowsFresh(ctx, dbPath, facts, add, except, t.blobs, nil, 0)
		})
		t.freeBlobs()
		return facts, t, err
	}
	listed := beside(list) // awaited below on every path
	pending := func() ([]keySize, error) {
		t, err := listed()
		if err != nil {
			return nil, err
		}
		return t.blobs, nil
	}
	facts, verr := s.verifyBackupWith(ctx, dir, udid, func(dbPath string, facts *backupFacts, add func(string, ...any)) error {
		return s.verifyRowsFresh(ctx, dbPath, facts, add, except, nil, pending, files)
	})
	t, err := listed()
	t.freeBlobs() // the row pass is over; on an error, t may be a listing whose index write failed
	if err != nil {
		return facts, nil, err
	}
	return facts, t, verr
}

// verifyRowsFresh checks that every file row of Manifest.db has a blob of its recorded size,
// taking presence and sizes from the listing pass (no stat per row). Every blob of a full
// backup is new, so every row's size is read (Manifest.db EachSize: the Size field only, not
// a decode of the whole archive, which cost ten times as much); domain and path are looked up
// for the few rows reported.
//
// With pending set the listing pass is still running (verifyFresh) and sizes is unused: the
// row pass keeps each file row's key and size (16 bytes a row, about files rows), pending
// yields the blobs once they are listed, and the rows that do not match are read again for
// their messages.
func (s *Store) verifyRowsFresh(ctx context.Context, dbPath string, facts *backupFacts, add func(string, ...any), except map[string]bool, sizes []keySize, pending func() ([]keySize, error), files int) error {
	db, err := backupfmt.OpenManifestDB(dbPath)
	if err != nil {
		add("Manifest.db: %v", err)
		return nil
	}
	defer db.Close()
	bad := 0
	name := func(id string) string {
		if r, err := db.Get(ctx, id); err == nil {
			return fmt.Sprintf("%s (%s-%s)", id, r.Domain, r.RelativePath)
		}
		return id
	}
	check := func(id string, size int64) {
		i, found := slices.BinarySearchFunc(sizes, keySize{key: idKey(id)}, compareKeySize)
		if except[id] && (!found || sizes[i].size != size) {
			facts.Excepted = append(facts.Excepted, id)
			return
		}
		switch {
		case !found:
			if bad++; bad <= maxProblems {
				add("blob %s is missing", name(id))
			}
		case sizes[i].size != size:
			if bad++; bad <= maxProblems {
				add("blob %s has %d bytes, Manifest.db says %d", name(id), sizes[i].size, size)
			}
		}
	}
	var rows []keySize
	if pending != nil {
		var mem offheap.Mem
		defer mem.Free()
		rows = offheap.Alloc[keySize](&mem, files+files/16+64)
	}
	err = db.EachSize(ctx, func(id string, flags, size int64) error {
		if !s.fileRow(facts, id, flags, nil, &bad, add) {
			return nil
		}
		if pending != nil {
			rows = append(rows, keySize{idKey(id), size})
		} else {
			check(id, size)
		}
		return nil
	})
	if err := rowPassFailed(ctx, err, add); err != nil {
		return err
	}
	if pending != nil {
		if sizes, err = pending(); err != nil {
			return err
		}
		if odd := mismatched(rows, sizes); len(odd) > 0 {
			err := db.EachSize(ctx, func(id string, flags, size int64) error {
				if flags == backupfmt.FlagFile && backupfmt.ValidFileID(id) && odd[idKey(id)] {
					check(id, size)
				}
				return nil
			})
			if err := rowPassFailed(ctx, err, add); err != nil {
				return err
			}
		}
	}
	if bad > maxProblems {
		add("%d blobs are missing or wrong in total", bad)
	}
	return nil
}

// mismatched returns the keys of rows (sorted here) that no blob of blobs (sorted) has, or
// whose blob has another size.
func mismatched(rows, blobs []keySize) map[uint64]bool {
	slices.SortFunc(rows, compareKeySize)
	var odd map[uint64]bool
	i := 0
	for _, r := range rows {
		for i < len(blobs) && blobs[i].key < r.key {
			i++
		}
		if i == len(blobs) || blobs[i] != r {
			if odd == nil {
				odd = map[uint64]bool{}
			}
			odd[r.key] = true
		}
	}
	return odd
}

// sizes returns the new latest's sizes and, when they are known without measuring, the
// previous latest's (see the comment at the top).
func (t *freshTally) sizes(ctx context.Context, dir, prev string, prevRec Snapshot) (usage, *usage, error) {
	if t.shared {
		// Shared with something: only a walk with an inode map can say what is whose,
		// and rollForward measures the previous latest.
		u, err := measure(ctx, dir, false)
		return u, nil, err
	}
	if prev == "" {
		return t.u, nil, nil
	}
	return t.u, &usage{Files: prevRec.FileCount, Total: prevRec.TotalSize, Unique: prevRec.UniqueSize}, nil
}

// indexFresh adds the entries gen emits to the content index in one streaming pass,
// creating the index when there is none (a first backup) or it is unreadable (created).
func (s *Store) indexFresh(ctx context.Context, udid string, gen func(emit func(hashEntry)) error) (created bool, err error) {
	path := s.l.hashes(udid)
	err = appendHashesFrom(path, gen)
	if !errors.Is(err, errNoIndex) {
		return false, err
	}
	if exists(path) {
		s.log.Warn("content index unreadable; rebuilding it", "udid", udid)
	}
	return true, atomicfile.Write(path, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 256<<10)
		fmt.Fprintln(bw, hashesHeader)
		if err := gen(func(e hashEntry) { writeHashLine(bw, e) }); err != nil {
			return err
		}
		return bw.Flush()
	})
}
