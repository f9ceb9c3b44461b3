//go:build unix

package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/failure"
)

// flipByte changes one byte of a committed file in place and puts its mtime back, as bit rot
// or a bad sector would: nothing but the content says it changed.
func flipByte(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, fi.Size()/2)
	b[0] ^= 0x40
	f.WriteAt(b, fi.Size()/2)
	f.Close()
	os.Chmod(path, fi.Mode().Perm())
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
}

// sharedBlob returns a blob of the latest backup that the oldest snapshot shares by hard link.
func sharedBlob(t *testing.T, s *Store, list []Snapshot) string {
	t.Helper()
	latest := list[len(list)-1].Path
	var found string
	filepath.WalkDir(latest, func(p string, d os.DirEntry, err error) error {
		if err != nil || found != "" || !d.Type().IsRegular() || len(filepath.Base(filepath.Dir(p))) != 2 {
			return err
		}
		rel, _ := filepath.Rel(latest, p)
		if inode(t, p) == inodeOr0(filepath.Join(list[0].Path, rel)) {
			found = rel
		}
		return nil
	})
	if found == "" {
		t.Fatal("no blob shared between the oldest snapshot and the latest")
	}
	return found
}

func inodeOr0(p string) uint64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	ino, _, _ := inodeOf(fi)
	return ino
}

func TestVerifyDataFindsFlippedByte(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(&fakeClock{t: epoch, step: 24 * time.Hour}))
	dev := newFakeDevice(testUDID, 30, 4000, 21)
	runBackup(t, s, dev)
	dev.change(10)
	runBackup(t, s, dev)
	dev.change(10)
	runBackup(t, s, dev)
	ctx := context.Background()
	if rep, err := s.VerifyData(ctx, testUDID); err != nil || len(rep.Damaged) != 0 || rep.Files == 0 || rep.Unindexed != 0 {
		t.Fatalf("clean store: %+v, %v", rep, err)
	}

	list := mustList(t, s)
	rel := sharedBlob(t, s, list)
	flipByte(t, filepath.Join(list[len(list)-1].Path, rel))
	rep, err := s.VerifyData(ctx, testUDID)
	if failure.ClassOf(err) != failure.Damaged || failure.ExitCode(err) != failure.ExitDamaged {
		t.Fatalf("verify --data after a flipped byte: %v, want class damaged", err)
	}
	if len(rep.Damaged) != 1 || filepath.ToSlash(rel) != rep.Damaged[0].Path {
		t.Fatalf("damaged %+v, want just %s", rep.Damaged, rel)
	}
	var sharing []string
	for _, sn := range list {
		if inodeOr0(filepath.Join(sn.Path, rel)) == inode(t, filepath.Join(list[len(list)-1].Path, rel)) {
			sharing = append(sharing, sn.ID)
		}
	}
	got := rep.Damaged[0].Snapshots
	slices.Sort(got)
	if len(sharing) < 2 || !slices.Equal(got, sharing) || !strings.Contains(err.Error(), rel) {
		t.Fatalf("damage reported in %v (%v), want every snapshot sharing the file: %v", got, err, sharing)
	}
	// Marked in the records; the latest is damaged, so the next backup is a full one.
	for _, sn := range mustList(t, s) {
		if slices.Contains(sharing, sn.ID) != slices.Contains(sn.Damaged, filepath.ToSlash(rel)) {
			t.Errorf("snapshot %s marked damaged %v", sn.ID, sn.Damaged)
		}
	}
	snap := runBackup(t, s, dev)
	if snap.Kind != KindFull {
		t.Errorf("backup after damage in the latest: %s, want full", snap.Kind)
	}
	if inodeOr0(filepath.Join(snap.Path, rel)) == inodeOr0(filepath.Join(list[0].Path, rel)) {
		t.Error("the new latest still shares the damaged file")
	}
	rep, err = s.VerifyData(ctx, testUDID)
	for _, d := range rep.Damaged {
		if slices.Contains(d.Snapshots, snap.ID) {
			t.Errorf("the new latest is damaged: %+v", d)
		}
	}
	if len(rep.Damaged) != 1 || err == nil {
		t.Errorf("old snapshots' damage: %+v, %v; want still reported", rep.Damaged, err)
	}

	// The scrub finds it too, within its daily budget, going on where it stopped.
	var seen int64
	found := false
	for day := 0; day < 50 && !found; day++ {
		rep, err := s.Scrub(ctx, testUDID, ScrubBudget{MaxBytes: 20_000})
		if rep.Bytes > 20_000 && rep.Files > 1 {
			t.Fatalf("scrub read %d bytes on a budget of 20000", rep.Bytes)
		}
		seen += rep.Bytes
		found = err != nil && len(rep.Damaged) > 0
	}
	if !found {
		t.Fatalf("the scrub did not find the damage after reading %d bytes", seen)
	}
	// Called again within the day (the store's clock did not move a day on): reads nothing.
	s.now = func() time.Time { return epoch.Add(365 * 24 * time.Hour) }
	s.Scrub(ctx, testUDID, ScrubBudget{MaxBytes: 20_000, Every: 24 * time.Hour}) // reads a slice
	s.now = func() time.Time { return epoch.Add(365*24*time.Hour + time.Hour) }
	if rep, _ := s.Scrub(ctx, testUDID, ScrubBudget{MaxBytes: 20_000, Every: 24 * time.Hour}); rep.Bytes != 0 || rep.Files != 0 {
		t.Errorf("second scrub within a day read %d bytes", rep.Bytes)
	}
	// A slice stopped before its end (a backup waits) is not the day's: the next call reads.
	s.now = func() time.Time { return epoch.Add(366*24*time.Hour + time.Hour) }
	stopped, stop := context.WithCancel(ctx)
	stop()
	if rep, _ := s.Scrub(stopped, testUDID, ScrubBudget{MaxBytes: 20_000, Every: 24 * time.Hour}); rep.Bytes != 0 {
		t.Errorf("a stopped scrub read %d bytes", rep.Bytes)
	}
	if rep, _ := s.Scrub(ctx, testUDID, ScrubBudget{MaxBytes: 20_000, Every: 24 * time.Hour}); rep.Bytes == 0 {
		t.Error("after a stopped slice the day's scrub read nothing")
	}
}

// TestExternalBackupIntoLatest: another tool backs up into the latest folder. Finished: the
// next run records it as "external" first. Unfinished: it is never recorded, said so, and
// the run is a full backup; nothing committed before changes.
func TestExternalBackupIntoLatest(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(&fakeClock{t: epoch, step: 24 * time.Hour}))
	dev := newFakeDevice(testUDID, 20, 2000, 31)
	runBackup(t, s, dev)
	dev.change(10)
	runBackup(t, s, dev)
	oldest := mustList(t, s)[0]
	oldestHash := hashTree(t, oldest.Path)

	// The other tool writes new files by rename (as idevicebackup2 and the engine do).
	dev.change(10)
	if err := dev.backup(s.Location(), nil); err != nil {
		t.Fatal(err)
	}
	snap := runBackup(t, s, dev)
	list := mustList(t, s)
	if len(list) != 3 || list[1].Kind != KindExternal || list[2].ID != snap.ID || len(snap.Notes) == 0 {
		t.Fatalf("after an external backup: %+v; want full, external, then this run with a note", list)
	}
	for _, sn := range list {
		if err := s.Verify(context.Background(), testUDID, sn.ID); err != nil {
			t.Errorf("verify %s: %v", sn.ID, err)
		}
	}

	// Unfinished: Status.plist still says uploading.
	dev.change(10)
	if err := dev.backup(s.Location(), nil); err != nil {
		t.Fatal(err)
	}
	if err := writeRenamed(filepath.Join(s.LatestDir(testUDID), "Status.plist"), dev.status("uploading")); err != nil {
		t.Fatal(err)
	}
	snap = runBackup(t, s, dev)
	list = mustList(t, s)
	for _, sn := range list {
		if sn.Kind == KindExternal && sn.ID > list[1].ID {
			t.Errorf("an unfinished external backup was recorded: %+v", sn)
		}
	}
	if snap.Kind != KindFull || len(snap.Notes) == 0 || !strings.Contains(snap.Notes[0], "did not finish") {
		t.Errorf("run after an unfinished external backup: kind %s, notes %q; want full with a note", snap.Kind, snap.Notes)
	}
	if hashTree(t, oldest.Path) != oldestHash {
		t.Error("the oldest snapshot changed")
	}
	for _, sn := range list {
		if err := s.Verify(context.Background(), testUDID, sn.ID); err != nil {
			t.Errorf("verify %s: %v", sn.ID, err)
		}
	}
}

// TestReaderDuringCommit: a reader (another Store, as another process would) arriving while
// a commit has moved the latest folder away waits for the commit instead of saying "no
// backup", and gets "busy, retry" if the commit takes longer than it waits.
func TestReaderDuringCommit(t *testing.T) {
	dir := t.TempDir()
	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	opts := testOptions(&fakeClock{t: epoch, step: time.Hour})
	opts.hook = func(p string) {
		if p == "commit:moved-latest" {
			once.Do(func() { close(paused); <-resume })
		}
	}
	s := openStore(t, dir, opts)
	dev := newFakeDevice(testUDID, 10, 500, 41)
	runBackup(t, s, dev)
	dev.change(20)
	done := make(chan Snapshot)
	go func() { done <- runBackup(t, s, dev) }()
	<-paused

	reader := openStore(t, dir, testOptions(&fakeClock{t: epoch, step: time.Hour}))
	ctx := context.Background()
	if _, err := reader.LatestForReading(ctx, testUDID, 100*time.Millisecond); failure.ClassOf(err) != failure.DeviceBusy {
		t.Fatalf("reader during a long commit: %v, want busy (retry)", err)
	}
	got := make(chan error)
	go func() {
		p, err := reader.LatestForReading(ctx, testUDID, 20*time.Second)
		if err == nil && p != reader.LatestDir(testUDID) {
			err = errors.New("wrong folder " + p)
		}
		got <- err
	}()
	close(resume)
	if err := <-got; err != nil {
		t.Fatalf("reader waiting for the commit: %v", err)
	}
	<-done
}
