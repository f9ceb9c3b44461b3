package store

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/zeebo/xxh3"

	"snapback/internal/atomicfile"
	"snapback/internal/backupfmt"
)

// Issue #16: a full backup's commit (`backup --full`, and every first backup) costs one pass
// over what the run wrote.
//
// The staging folder of a full run starts empty, so every file in it was written by this run.
// diffTree against no latest lists it one directory at a time and stats each file once
// (delta.written: size, inode, mtime, links, mode); verify, the sizes and the content index
// all use that one stat instead of a stat in verify, another in measure and a third walk for
// the index (which also read and rewrote the whole index). The content index is appended in
// one streaming pass, with the sums the engine computed while the bytes streamed in; only the
// files it did not hash are read.
//
// Sizes: when every staged file has one link (a fresh full backup: nothing in it is shared
// with any snapshot), Files, Total and Unique are the count and byte sum of the written
// files, Unique == Total, and the previous latest's sizes do not change (no link count of its
// files changed), so the journal carries them and recovery need not measure it. A file with
// more links (never written by the engine, but nothing forbids it) falls back to measure().
// TestFullCommitSizesMatchMeasure checks this against measure().

// verifyBackupFresh is verifyBackup for a staging folder that started empty, whose files d
// lists (each stat'ed once by the listing pass).
func (s *Store) verifyBackupFresh(ctx context.Context, dir, udid string, except map[string]bool, d *delta) (backupFacts, error) {
	return s.verifyBackupWith(ctx, dir, udid, func(dbPath string, facts *backupFacts, add func(string, ...any)) error {
		return s.verifyRowsFresh(ctx, dbPath, facts, add, except, d)
	})
}

type keySize struct {
	key  uint64
	size int64
}

// blobSizes is the size of every blob of d, sorted by idKey.
func blobSizes(d *delta) []keySize {
	out := make([]keySize, 0, len(d.present))
	for _, w := range d.written {
		if id, ok := blobFileID(w.rel); ok {
			out = append(out, keySize{idKey(id), w.size})
		}
	}
	slices.SortFunc(out, func(a, b keySize) int { return cmp.Compare(a.key, b.key) })
	return out
}

// verifyRowsFresh checks that every file row of Manifest.db has a blob of its recorded size,
// taking presence and sizes from the listing pass (no stat per row). Every blob of a full
// backup is new, so every row's size is read (Manifest.db EachSize: the Size field only, not
// a decode of the whole archive, which cost ten times as much); domain and path are looked up
// for the few rows reported.
func (s *Store) verifyRowsFresh(ctx context.Context, dbPath string, facts *backupFacts, add func(string, ...any), except map[string]bool, d *delta) error {
	db, err := backupfmt.OpenManifestDB(dbPath)
	if err != nil {
		add("Manifest.db: %v", err)
		return nil
	}
	defer db.Close()
	sizes := blobSizes(d)
	bad := 0
	name := func(id string) string {
		if r, err := db.Get(ctx, id); err == nil {
			return fmt.Sprintf("%s (%s-%s)", id, r.Domain, r.RelativePath)
		}
		return id
	}
	err = db.EachSize(ctx, func(id string, flags, size int64) error {
		if !s.fileRow(facts, id, flags, nil, &bad, add) {
			return nil
		}
		i, found := slices.BinarySearchFunc(sizes, idKey(id), func(e keySize, k uint64) int { return cmp.Compare(e.key, k) })
		if except[id] && (!found || sizes[i].size != size) {
			facts.Excepted = append(facts.Excepted, id)
			return nil
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

// applyFresh marks the written files read-only and returns the new latest's sizes and, when
// they are known without measuring, the previous latest's (see the comment at the top).
func (d *delta) applyFresh(ctx context.Context, dir, prev string, prevRec Snapshot) (usage, *usage, error) {
	u, _, err := d.apply(ctx, dir, Snapshot{})
	if err != nil {
		return usage{}, nil, err
	}
	for _, w := range d.written {
		if w.nlink > 1 {
			// Shared with something: only a walk with an inode map can say what is whose,
			// and rollForward measures the previous latest.
			u, err = measure(ctx, dir, false)
			return u, nil, err
		}
	}
	if prev == "" {
		return u, nil, nil
	}
	return u, &usage{Files: prevRec.FileCount, Total: prevRec.TotalSize, Unique: prevRec.UniqueSize}, nil
}

// indexFresh adds every written file to the content index in one streaming pass, creating
// the index when there is none (a first backup) or it is unreadable.
func (s *Store) indexFresh(ctx context.Context, udid, dir string, d *delta, streamed map[blobKey]xxh3.Uint128) error {
	gen := func(emit func(hashEntry)) error { return d.hashWritten(ctx, dir, streamed, emit) }
	path := s.l.hashes(udid)
	err := appendHashesFrom(path, gen)
	if !errors.Is(err, errNoIndex) {
		return err
	}
	if exists(path) {
		s.log.Warn("content index unreadable; rebuilding it", "udid", udid)
	}
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 256<<10)
		fmt.Fprintln(bw, hashesHeader)
		if err := gen(func(e hashEntry) { writeHashLine(bw, e) }); err != nil {
			return err
		}
		return bw.Flush()
	})
}
