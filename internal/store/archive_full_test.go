//go:build linux

package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestArchiveAtZeroBytesFree: `snapback restore` archives the latest backup before it
// restores, and must do so on a disk with 0 bytes free (a real tmpfs filled up). The latest
// folder becomes the pinned archive by rename, its content intact; once space is freed the
// next backup (a full one: there is no latest left to share with) commits and every snapshot
// and archive verifies.
func TestArchiveAtZeroBytesFree(t *testing.T) {
	mnt := t.TempDir()
	mountTmpfs(t, mnt, "4m")
	opts := testOptions(&fakeClock{t: epoch, step: 24 * time.Hour})
	s := openStore(t, mnt, opts)
	dev := newFakeDevice(testUDID, 20, 8000, 11)
	runBackup(t, s, dev)
	dev.change(40)
	latest := runBackup(t, s, dev)
	latestDir := s.LatestDir(testUDID)
	want := hashTree(t, latestDir)
	filler := fillDisk(t, mnt)
	if free, _ := freeBytes(mnt); free != 0 {
		t.Fatalf("%d bytes free after filling", free)
	}
	ctx := context.Background()

	a, err := s.Archive(ctx, testUDID, "latest")
	if err != nil {
		t.Fatalf("archive the latest backup at 0 bytes free: %v", err)
	}
	if !a.IsArchive() || !a.Pinned || a.Source != latest.ID || a.Path != filepath.Join(s.Location(), ArchiveName(testUDID, latest.Time)) {
		t.Fatalf("archive %+v, want a pinned archive of %s beside the latest", a, latest.ID)
	}
	if got := hashTree(t, a.Path); got != want {
		t.Fatal("the archive does not hold the latest backup's content")
	}
	list := mustList(t, s)
	var found bool
	for _, sn := range list {
		found = found || (sn.ID == a.ID && sn.IsArchive() && sn.Pinned && sn.Source == latest.ID)
		if err := s.Verify(ctx, testUDID, sn.ID); err != nil {
			t.Errorf("verify %s after archiving at 0 bytes free: %v", sn.ID, err)
		}
	}
	if rep, err := s.VerifyData(ctx, testUDID); err != nil || len(rep.Damaged) != 0 {
		t.Errorf("verify --data after the archive by rename: %+v %v", rep, err)
	}
	if !found || len(list) != 2 {
		t.Fatalf("list after archiving: %+v, want the older snapshot and the archive", list)
	}
	if _, err := s.Get(testUDID, "latest"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a latest backup is still listed: %v", err)
	}
	// The moved record is read as the archive's: archiving it again is refused as for any
	// archive, not taken for a snapshot.
	if again, err := s.Archive(ctx, testUDID, a.ID); err == nil {
		t.Fatalf("archiving the archive: %+v, want refused", again)
	}

	// Space is freed: the next backup commits (full), and the archive is untouched.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	dev.change(10)
	if next := runBackup(t, s, dev); next.Kind != KindFull {
		t.Errorf("next backup: %s, want full", next.Kind)
	}
	if got := hashTree(t, a.Path); got != want {
		t.Fatal("the next backup changed the archive")
	}
	for _, sn := range mustList(t, s) {
		if err := s.Verify(ctx, testUDID, sn.ID); err != nil {
			t.Errorf("verify %s: %v", sn.ID, err)
		}
	}
}
