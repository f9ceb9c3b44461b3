//go:build linux

package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func dirIno(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func mustPrepare(t *testing.T, s *Store, want bool) {
	t.Helper()
	made, err := s.PrepareNext(context.Background(), testUDID)
	if err != nil {
		t.Fatalf("PrepareNext: %v", err)
	}
	if made != want {
		t.Fatalf("PrepareNext made a folder: %v, want %v", made, want)
	}
}

// A prepared folder is what the next Begin starts from: no file is cloned at Begin, the
// commit still takes the incremental path, and every record says what measure() says, also
// after the operations that count the latest's links while a prepared folder exists
// (deleting the snapshot next to the latest, archiving the latest). Nothing committed changes.
func TestPreparedNextIsTaken(t *testing.T) {
	ctx := context.Background()
	clones, deltas := 0, 0
	opts := testOptions(&fakeClock{t: epoch, step: time.Hour})
	opts.hook = func(p string) {
		switch p {
		case "clone":
			clones++
		case "commit:delta":
			deltas++
		}
	}
	s := openStore(t, t.TempDir(), opts)
	dev := newFakeDevice(testUDID, 80, 700, 13)
	runBackup(t, s, dev)
	for run := 1; run <= 6; run++ {
		before := committedHashes(t, s, testUDID)
		clones = 0
		mustPrepare(t, s, true)
		if clones < 80 {
			t.Fatalf("run %d: PrepareNext cloned %d files, want every file", run, clones)
		}
		mustPrepare(t, s, false) // already prepared: nothing done twice
		checkUnchanged(t, s, before, "by PrepareNext")
		switch run {
		case 3:
			// Deleting the snapshot next to the latest counts the latest's links.
			list := mustList(t, s)
			if err := s.Delete(ctx, testUDID, list[len(list)-2].ID); err != nil {
				t.Fatal(err)
			}
			checkSizes(t, s, run)
			mustPrepare(t, s, true)
		case 5:
			if _, err := s.Archive(ctx, testUDID, "latest"); err != nil {
				t.Fatal(err)
			}
			checkSizes(t, s, run)
			mustPrepare(t, s, true)
		}
		before = committedHashes(t, s, testUDID)
		prepared := dirIno(t, s.l.nextBackup(testUDID))
		dev.change(10)
		clones = 0
		r, err := s.Begin(ctx, testUDID, BeginOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if clones != 0 || dirIno(t, r.Dir()) != prepared {
			t.Fatalf("run %d: Begin cloned %d files instead of taking the prepared folder", run, clones)
		}
		if exists(s.l.next(testUDID)) {
			t.Fatalf("run %d: the prepared folder is still there after Begin took it", run)
		}
		if err := dev.backup(r.Root(), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Commit(ctx, CommitMeta{}); err != nil {
			t.Fatal(err)
		}
		checkUnchanged(t, s, before, "by a backup from a prepared folder")
		checkSizes(t, s, run)
	}
	if deltas != 6 {
		t.Errorf("%d of 6 commits from a prepared folder took the incremental path", deltas)
	}
	for _, sn := range mustList(t, s) {
		if err := s.Verify(ctx, testUDID, sn.ID); err != nil {
			t.Errorf("verify %s: %v", sn.ID, err)
		}
	}
}

// A prepared folder that no longer clones the latest backup as it is must never become a
// backup's start: another program backed up into the latest, a full backup was asked for,
// or the preparation never finished. Each is removed, and the backup is what it would have
// been without it.
func TestStalePreparedNextIsNotUsed(t *testing.T) {
	ctx := context.Background()
	clones := 0
	s := openStore(t, t.TempDir(), countingOptions(&fakeClock{t: epoch, step: time.Hour}, "clone", &clones))
	dev := newFakeDevice(testUDID, 40, 900, 17)
	runBackup(t, s, dev)
	dev.change(10)
	runBackup(t, s, dev)

	// Another program backs up into the latest folder after the preparation.
	mustPrepare(t, s, true)
	dev.change(10)
	if err := dev.backup(s.Location(), nil); err != nil {
		t.Fatal(err)
	}
	clones = 0
	runBackup(t, s, dev)
	if clones == 0 {
		t.Error("the stale prepared folder was used after another program backed up into the latest")
	}
	if list := mustList(t, s); list[len(list)-2].Kind != KindExternal {
		t.Errorf("the other program's backup was not recorded: %+v", list)
	}
	checkSizes(t, s, 1)

	// A full backup starts empty.
	mustPrepare(t, s, true)
	dev.change(10)
	if snap := runBackupWith(t, s, dev, BeginOptions{Full: true}); snap.Kind != KindFull {
		t.Errorf("forced full backup committed as %s", snap.Kind)
	}
	if exists(s.l.next(testUDID)) {
		t.Error("a full backup left the prepared folder behind")
	}
	checkSizes(t, s, 2)

	// A preparation that never wrote its marker (a crash) is removed when the store opens.
	mustPrepare(t, s, true)
	if err := os.Remove(s.l.nextMarker(testUDID)); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, s.Location(), countingOptions(&fakeClock{t: epoch.Add(100 * time.Hour), step: time.Hour}, "clone", &clones))
	if exists(s.l.next(testUDID)) {
		t.Error("recovery left an unfinished prepared folder")
	}

	// A run that took the prepared folder and was aborted leaves nothing to take.
	mustPrepare(t, s, true)
	r, err := s.Begin(ctx, testUDID, BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	if exists(s.l.next(testUDID)) || exists(s.l.staging(testUDID)) {
		t.Error("an aborted run left the prepared or the staging folder")
	}

	// A marker naming another latest backup: the folder is not used, even if it is whole.
	mustPrepare(t, s, true)
	if err := os.Remove(filepath.Join(s.l.nextBackup(testUDID), "Status.plist")); err != nil {
		t.Fatal(err) // were it used, this backup could not verify
	}
	if err := os.WriteFile(s.l.nextMarker(testUDID), []byte(`{"latest":"20200101-000000","fingerprint":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dev.change(10)
	clones = 0
	runBackup(t, s, dev)
	if clones == 0 {
		t.Error("a prepared folder marked for another latest backup was used")
	}
	checkSizes(t, s, 3)
}

// A preparation cancelled half-way (a shutdown) returns at once and leaves an unmarked folder,
// which is never used and which the next Open removes.
func TestCancelledPrepareIsRemovedByRecovery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	opts := testOptions(&fakeClock{t: epoch, step: time.Hour})
	opts.hook = func(p string) {
		if p == "clone" {
			if n++; n == 20 {
				cancel()
			}
		}
	}
	dir := t.TempDir()
	s := openStore(t, dir, opts)
	dev := newFakeDevice(testUDID, 600, 300, 23)
	runBackup(t, s, dev)
	n = 0
	if _, err := s.PrepareNext(ctx, testUDID); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled PrepareNext: %v", err)
	}
	if _, ok := s.readNext(testUDID); ok || !exists(s.l.next(testUDID)) {
		t.Fatalf("a cancelled preparation should leave an unmarked folder (marked: %v)", ok)
	}
	s = openStore(t, dir, testOptions(&fakeClock{t: epoch.Add(10 * time.Hour), step: time.Hour}))
	if exists(s.l.next(testUDID)) {
		t.Error("recovery left the cancelled preparation")
	}
	dev.change(10)
	runBackup(t, s, dev)
	checkSizes(t, s, 1)
}

// PrepareNext links with its workers at idle I/O priority, though the clone runs on
// goroutines of its own (a priority is a thread's, so each worker must set it): the folder
// is prepared while the user may be working, and must never compete with them.
func TestPrepareNextLinksAtIdlePriority(t *testing.T) {
	opts := testOptions(&fakeClock{t: epoch, step: time.Hour})
	var classes []int
	preparing := false
	opts.hook = func(p string) { // called under the store's hook lock, on the linking thread
		switch {
		case p == "next:begin":
			preparing = true
		case p == "next:cloned":
			preparing = false
		case p == "clone" && preparing:
			classes = append(classes, ioPriorityClass())
		}
	}
	s := openStore(t, t.TempDir(), opts)
	runBackup(t, s, newFakeDevice(testUDID, 300, 700, 17))
	mustPrepare(t, s, true)
	if len(classes) < 300 {
		t.Fatalf("%d files linked while preparing, want every file", len(classes))
	}
	for i, c := range classes {
		if c != ioprioClassIdle {
			t.Fatalf("file %d of the prepared folder was linked at I/O priority class %d, want idle (%d)", i, c, ioprioClassIdle)
		}
	}
}
