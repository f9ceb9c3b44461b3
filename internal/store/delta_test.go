//go:build linux

package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/backupfmt"
)

// deltaOptions are testOptions that count the commits that took the incremental path.
func deltaOptions(clock *fakeClock, deltas *int) Options {
	return countingOptions(clock, "commit:delta", deltas)
}

func checkSizes(t *testing.T, s *Store, run int) {
	t.Helper()
	for _, sn := range mustList(t, s) {
		u, err := measure(context.Background(), sn.Path, false)
		if err != nil {
			t.Fatal(err)
		}
		if sn.FileCount != u.Files || sn.TotalSize != u.Total || sn.UniqueSize != u.Unique {
			t.Errorf("run %d: record of %s (latest %v) says files %d total %d unique %d; measure() says %d %d %d",
				run, sn.ID, sn.Latest, sn.FileCount, sn.TotalSize, sn.UniqueSize, u.Files, u.Total, u.Unique)
		}
	}
}

// An incremental commit computes the sizes of the new latest and of the previous one from
// what the run changed; they must be what measuring the folders says, run after run, with
// files modified (replaced), added and removed, and after a snapshot in the middle is
// deleted (which re-measures its neighbours).
func TestIncrementalSizesMatchMeasure(t *testing.T) {
	deltas := 0
	s := openStore(t, t.TempDir(), deltaOptions(&fakeClock{t: epoch, step: time.Hour}, &deltas))
	dev := newFakeDevice(testUDID, 80, 700, 11)
	runBackup(t, s, dev)
	checkSizes(t, s, 0)
	for run := 1; run <= 6; run++ {
		dev.change(10)
		if run == 3 {
			// A file the device sends again unchanged still gets a new inode: written.
			for n := range dev.files {
				dev.files[n] = append([]byte(nil), dev.files[n]...)
				break
			}
		}
		runBackup(t, s, dev)
		checkSizes(t, s, run)
		if run == 4 {
			list := mustList(t, s)
			if err := s.Delete(context.Background(), testUDID, list[2].ID); err != nil {
				t.Fatal(err)
			}
			checkSizes(t, s, run)
		}
	}
	if deltas != 6 {
		t.Fatalf("%d of 6 incremental commits took the incremental path", deltas)
	}
	// The new latest's unique size is what this run wrote: never zero after a change.
	list := mustList(t, s)
	if latest := list[len(list)-1]; latest.UniqueSize == 0 || latest.UniqueSize >= latest.TotalSize {
		t.Errorf("latest unique %d of total %d: not the run's own bytes", latest.UniqueSize, latest.TotalSize)
	}
}

// The incremental verify must still refuse a staging folder whose Manifest.db names a blob
// that is not there (an unchanged one removed, or a new row never sent) or whose newly
// written blob is shorter than its row says.
func TestIncrementalVerifyRefuses(t *testing.T) {
	blobOf := func(n string) string { return backupfmt.BlobPath("", backupfmt.FileID("HomeDomain", n)) }
	cases := map[string]func(t *testing.T, dev *fakeDevice, dir, latest string){
		"unchanged blob missing": func(t *testing.T, dev *fakeDevice, dir, latest string) {
			for _, n := range dev.names() {
				if strings.HasPrefix(n, "Library/f") {
					p := filepath.Join(dir, blobOf(n))
					if inodeOr0(p) == inodeOr0(filepath.Join(latest, blobOf(n))) {
						if err := os.Remove(p); err != nil {
							t.Fatal(err)
						}
						return
					}
				}
			}
			t.Fatal("no unchanged blob")
		},
		"new row without blob": func(t *testing.T, dev *fakeDevice, dir, latest string) {
			if err := os.Remove(filepath.Join(dir, blobOf("Library/g001-000000"))); err != nil {
				t.Fatal(err)
			}
		},
		"written blob short": func(t *testing.T, dev *fakeDevice, dir, latest string) {
			if err := writeRenamed(filepath.Join(dir, blobOf("Library/g001-000001")), []byte("short")); err != nil {
				t.Fatal(err)
			}
		},
		"written blob truncated in place": func(t *testing.T, dev *fakeDevice, dir, latest string) {
			if err := os.Truncate(filepath.Join(dir, blobOf("Library/g001-000002")), 3); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, breakIt := range cases {
		for _, serial := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/serial=%v", name, serial), func(t *testing.T) {
				deltas := 0
				root := t.TempDir()
				opts := deltaOptions(&fakeClock{t: epoch, step: time.Hour}, &deltas)
				opts.serialVerify = serial
				s := openStore(t, root, opts)
				dev := newFakeDevice(testUDID, 40, 500, 5)
				runBackup(t, s, dev)
				r, err := s.Begin(context.Background(), testUDID, BeginOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Abort()
				dev.change(10) // adds Library/g001-000000 … 000003
				if err := dev.backup(r.Root(), nil); err != nil {
					t.Fatal(err)
				}
				breakIt(t, dev, r.Dir(), s.LatestDir(testUDID))
				_, err = r.Commit(context.Background(), CommitMeta{})
				var ve *VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("Commit err = %v, want a VerifyError", err)
				}
				if deltas != 1 {
					t.Fatalf("the commit did not take the incremental path")
				}
				// A missing blob is named with its file, though the row pass kept only keys
				// while the listings were compared (diffVerify).
				if strings.Contains(name, "missing") || strings.Contains(name, "without blob") {
					if !strings.Contains(ve.Error(), "(HomeDomain-Library/") || !strings.Contains(ve.Error(), "is missing") {
						t.Errorf("VerifyError %q does not name the missing file", ve)
					}
				}
				// A written blob of the wrong size is named with its file and both sizes.
				for c, want := range map[string]string{"short": "has 5 bytes, Manifest.db says", "truncated": "has 3 bytes, Manifest.db says"} {
					if strings.Contains(name, c) && (!strings.Contains(ve.Error(), want) || !strings.Contains(ve.Error(), "(HomeDomain-Library/g001-00000")) {
						t.Errorf("VerifyError %q does not say %q of the file", ve, want)
					}
				}
				t.Log(ve)
			})
		}
	}
}

// The content index grows by appending; a crash can leave a torn last line. The next
// commit's entries must all be readable after it (only the torn line is lost), and a full
// data check finds every file of every snapshot indexed.
func TestContentIndexTornLineAndCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(&fakeClock{t: epoch, step: time.Hour}))
	dev := newFakeDevice(testUDID, 40, 500, 9)
	runBackup(t, s, dev)
	dev.change(10)
	runBackup(t, s, dev)
	path := s.l.hashes(testUDID)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("12345 678 9") // torn: no hash, no path, no newline
	f.Close()
	dev.change(10)
	runBackup(t, s, dev)
	rep, err := s.VerifyData(context.Background(), testUDID)
	if err != nil || rep.Unindexed != 0 || len(rep.Damaged) != 0 || rep.Files == 0 {
		t.Fatalf("after a torn index line: %+v, %v", rep, err)
	}

	// Stale entries (files of deleted snapshots) beyond twice the live files are dropped by
	// the next full read.
	f, _ = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	w := bufio.NewWriter(f)
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(w, "%d 10 10 00000000000000000000000000000000 ab/stale%d\n", uint64(1)<<40+uint64(i), i)
	}
	w.Flush()
	f.Close()
	if rep, err = s.VerifyData(context.Background(), testUDID); err != nil || rep.Unindexed != 0 {
		t.Fatalf("VerifyData: %+v, %v", rep, err)
	}
	idx, err := readHashes(path)
	if err != nil {
		t.Fatal(err)
	}
	if idx.lines > rep.Files+10 {
		t.Fatalf("index has %d entries for %d live files after compaction", idx.lines, rep.Files)
	}
	dev.change(10)
	runBackup(t, s, dev)
	if rep, err = s.VerifyData(context.Background(), testUDID); err != nil || rep.Unindexed != 0 || len(rep.Damaged) != 0 {
		t.Fatalf("after compaction and another commit: %+v, %v", rep, err)
	}
}

// A background clone: Ready waits for it, the run then commits as usual, and Abort during
// the clone stops it and leaves nothing behind.
func TestCloneInBackground(t *testing.T) {
	reached, release := make(chan struct{}), make(chan struct{})
	calls := 0
	block := false
	opts := testOptions(&fakeClock{t: epoch, step: time.Hour})
	opts.hook = func(p string) {
		if p == "clone" && block {
			if calls++; calls == 5 {
				close(reached)
				<-release
			}
		}
	}
	s := openStore(t, t.TempDir(), opts)
	dev := newFakeDevice(testUDID, 30, 400, 3)
	first := runBackup(t, s, dev)
	want := hashTree(t, first.Path)

	block = true
	r, err := s.Begin(context.Background(), testUDID, BeginOptions{CloneInBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	<-reached
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := r.Ready(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ready during the clone = %v, want it to wait", err)
	}
	cancel()
	aborted := make(chan error)
	go func() { aborted <- r.Abort() }()
	close(release)
	if err := <-aborted; err != nil {
		t.Fatal(err)
	}
	if exists(r.Root()) {
		t.Fatal("staging left after Abort during a background clone")
	}
	if got := hashTree(t, first.Path); got != want {
		t.Fatal("latest changed")
	}

	block = false
	r, err = s.Begin(context.Background(), testUDID, BeginOptions{CloneInBackground: true})
	if err != nil {
		t.Fatalf("Begin after the aborted run: %v", err)
	}
	if err := r.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	dev.change(10)
	if err := dev.backup(r.Root(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Commit(context.Background(), CommitMeta{}); err != nil {
		t.Fatal(err)
	}
	checkSizes(t, s, 1)
	if l := mustList(t, s); len(l) != 2 || hashTree(t, l[1].Path) == want {
		t.Fatalf("after a run with a background clone: %d snapshots", len(l))
	}
}

// The app scrubs after every backup with Every = 24 h; a scrub within that reads nothing at
// all, not even the content index (which costs O(files) time and memory): here an index it
// could not parse would fail it if it did.
func TestSkippedScrubReadsNothing(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(&fakeClock{t: epoch, step: time.Minute}))
	dev := newFakeDevice(testUDID, 20, 300, 2)
	runBackup(t, s, dev)
	ctx := context.Background()
	budget := ScrubBudget{MaxBytes: 1 << 20, Every: 24 * time.Hour}
	if _, err := s.Scrub(ctx, testUDID, budget); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.l.hashes(testUDID), []byte("not an index\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Scrub(ctx, testUDID, budget); err != nil || rep.Files != 0 {
		t.Fatalf("scrub within Every: %+v, %v; want nothing read", rep, err)
	}
}

// TestEntryReadyDuringClone: while the background clone runs, EntryReady of a prefix folder
// returns only once that folder is a complete clone of the latest backup's (the same names
// and inodes), whether a worker or the caller linked it, for callers asking in any order
// and at once; RootReady once the top-level files are in place; a name the latest backup
// does not have is ready at once. A run that goes on from there commits as usual.
func TestEntryReadyDuringClone(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(&fakeClock{t: epoch, step: time.Hour}))
	dev := newFakeDevice(testUDID, 2000, 64, 7)
	first := runBackup(t, s, dev)
	latest := first.Path
	prefixes, err := os.ReadDir(latest)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range prefixes {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) < 200 {
		t.Fatalf("only %d prefix folders", len(names))
	}
	listing := func(dir string) map[string]uint64 {
		m := map[string]uint64{}
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Error(err)
			return nil
		}
		for _, e := range es {
			fi, err := e.Info()
			if err != nil {
				t.Error(err)
				continue
			}
			ino, _, _ := inodeOf(fi)
			m[e.Name()] = ino
		}
		return m
	}
	for round := range 3 {
		r, err := s.Begin(context.Background(), testUDID, BeginOptions{CloneInBackground: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := r.RootReady(ctx); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{backupfmt.ManifestDBName, backupfmt.StatusPlistName, backupfmt.InfoPlistName} {
			a, b := listing(latest)[f], listing(r.Dir())[f]
			if a == 0 || a != b {
				t.Fatalf("round %d: after RootReady %s is inode %d in staging, %d in latest", round, f, b, a)
			}
		}
		if err := r.EntryReady(ctx, "no-such-folder"); err != nil {
			t.Fatal(err)
		}
		order := slices.Clone(names)
		rand.New(rand.NewPCG(uint64(round), 2)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var wg sync.WaitGroup
		for half := range 2 {
			wg.Go(func() {
				for i := half; i < len(order); i += 2 {
					name := order[i]
					if err := r.EntryReady(ctx, name); err != nil {
						t.Error(err)
						return
					}
					if want, got := listing(filepath.Join(latest, name)), listing(filepath.Join(r.Dir(), name)); !maps.Equal(want, got) {
						t.Errorf("round %d: %s after EntryReady: %d of %d entries", round, name, len(got), len(want))
					}
				}
			})
		}
		wg.Wait()
		dev.change(20)
		if err := dev.backup(r.Root(), nil); err != nil {
			t.Fatal(err)
		}
		snap, err := r.Commit(ctx, CommitMeta{})
		if err != nil {
			t.Fatal(err)
		}
		latest = snap.Path
		checkSizes(t, s, round+1)
	}
}
