package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupfmt"
)

// fourRuns commits four backups a day apart and returns the store and the records.
func fourRuns(t *testing.T) (*Store, *fakeDevice, string) {
	t.Helper()
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(&fakeClock{t: epoch, step: 24 * time.Hour}))
	dev := newFakeDevice(testUDID, 30, 1000, 11)
	for i := 0; i < 4; i++ {
		if i > 0 {
			dev.change(10)
		}
		runBackup(t, s, dev)
	}
	return s, dev, dir
}

func TestDeleteForgetsThenRemovesAndRefreshesNeighbours(t *testing.T) {
	s, _, _ := fourRuns(t)
	ctx := context.Background()
	list := mustList(t, s)
	want := committedHashes(t, s, testUDID)
	mid := list[1]
	if err := s.Delete(ctx, testUDID, mid.ID); err != nil {
		t.Fatal(err)
	}
	if exists(mid.Path) {
		t.Fatal("folder still there")
	}
	after := mustList(t, s)
	if len(after) != 3 {
		t.Fatalf("%d snapshots after delete, want 3", len(after))
	}
	// The older neighbour now alone holds what it shared only with the deleted one.
	if after[0].UniqueSize <= list[0].UniqueSize {
		t.Errorf("older neighbour unique %d, was %d: not refreshed", after[0].UniqueSize, list[0].UniqueSize)
	}
	for _, sn := range after {
		u, _ := measure(ctx, sn.Path, false)
		if sn.UniqueSize != u.Unique || sn.TotalSize != u.Total {
			t.Errorf("%s record says unique %d total %d, folder has %d %d", sn.ID, sn.UniqueSize, sn.TotalSize, u.Unique, u.Total)
		}
		if hashTree(t, sn.Path) != want[sn.ID] {
			t.Errorf("%s changed by deleting a neighbour", sn.ID)
		}
	}
	// Idempotent.
	if err := s.Delete(ctx, testUDID, mid.ID); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	// The latest and pinned snapshots are protected.
	if err := s.Delete(ctx, testUDID, after[2].ID); !errors.Is(err, ErrProtected) {
		t.Fatalf("Delete latest: %v, want ErrProtected", err)
	}
	if err := s.Pin(testUDID, after[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, testUDID, after[0].ID); !errors.Is(err, ErrProtected) {
		t.Fatalf("Delete pinned: %v, want ErrProtected", err)
	}
	if err := s.Unpin(testUDID, after[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, testUDID, after[0].ID); err != nil {
		t.Fatalf("Delete after Unpin: %v", err)
	}
}

func TestDeleteInterruptedAfterForgetIsFinishedByRecovery(t *testing.T) {
	s, _, dir := fourRuns(t)
	list := mustList(t, s)
	// Forget succeeded, the crash came before the folder was removed.
	os.Remove(filepath.Join(dir, VersionsDirName, testUDID, "snapshots", list[0].ID+".json"))
	if err := s.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exists(list[0].Path) {
		t.Fatal("folder of a forgotten snapshot survived recovery")
	}
	if n := len(mustList(t, s)); n != 3 {
		t.Fatalf("%d snapshots, want 3", n)
	}
}

func TestArchivePinnedAndNamedLikeApple(t *testing.T) {
	s, _, dir := fourRuns(t)
	ctx := context.Background()
	list := mustList(t, s)
	a, err := s.Archive(ctx, testUDID, list[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	wantName := testUDID + "-" + list[1].Time.UTC().Format("20060102-150405")
	if a.ID != wantName || a.Path != filepath.Join(dir, wantName) || !a.Pinned || !a.IsArchive() || a.Source != list[1].ID {
		t.Fatalf("archive = %+v, want %s pinned beside the latest", a, wantName)
	}
	if hashTree(t, a.Path) != hashTree(t, list[1].Path) {
		t.Fatal("archive differs from its snapshot")
	}
	again, err := s.Archive(ctx, testUDID, list[1].ID)
	if err != nil || again.ID != a.ID {
		t.Fatalf("archiving twice: %v %v", again.ID, err)
	}
	latestArch, err := s.Archive(ctx, testUDID, "")
	if err != nil {
		t.Fatal(err)
	}
	all := mustList(t, s)
	if m, _ := s.CloneMethod(); m == CloneHardlink && all[len(all)-1].UniqueSize != 0 {
		t.Errorf("latest still claims %d unique bytes after being archived by hard links", all[len(all)-1].UniqueSize)
	}
	if len(all) != 6 {
		t.Fatalf("%d entries, want 4 snapshots + 2 archives", len(all))
	}
	// Retention never deletes archives, even when told to delete everything it may.
	d, deleted, err := s.Prune(ctx, testUDID, Policy{KeepDaily: 1}, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range deleted {
		if strings.HasPrefix(id, testUDID+"-") {
			t.Fatalf("prune deleted archive %s", id)
		}
	}
	if len(deleted) != 3 || len(d.Delete) != 3 {
		t.Fatalf("prune deleted %v, want the 3 older snapshots", deleted)
	}
	if !exists(a.Path) || !exists(latestArch.Path) {
		t.Fatal("archive folder gone after prune")
	}
	if err := s.Verify(ctx, testUDID, a.ID); err != nil {
		t.Fatalf("Verify archive after its source was pruned: %v", err)
	}
	if err := s.Delete(ctx, testUDID, a.ID); !errors.Is(err, ErrProtected) {
		t.Fatalf("Delete pinned archive: %v, want ErrProtected", err)
	}
	s.Unpin(testUDID, a.ID)
	if err := s.Delete(ctx, testUDID, a.ID); err != nil || exists(a.Path) {
		t.Fatalf("Delete unpinned archive: %v", err)
	}
}

func TestExportIsStandalone(t *testing.T) {
	s, _, _ := fourRuns(t)
	ctx := context.Background()
	list := mustList(t, s)
	out := t.TempDir()
	got, err := s.Export(ctx, testUDID, list[0].ID, out)
	if err != nil {
		t.Fatal(err)
	}
	if got != filepath.Join(out, testUDID) {
		t.Fatalf("export at %s, want %s", got, filepath.Join(out, testUDID))
	}
	if hashTree(t, got) != hashTree(t, list[0].Path) {
		t.Fatal("export differs from the snapshot")
	}
	u, _ := measure(ctx, got, false)
	if u.Unique != u.Total {
		t.Fatal("export shares inodes with the store")
	}
	db, err := backupfmt.OpenManifestDB(filepath.Join(got, "Manifest.db"))
	if err != nil {
		t.Fatalf("export's Manifest.db: %v", err)
	}
	db.Close()
	if _, err := s.Export(ctx, testUDID, list[0].ID, out); err == nil {
		t.Fatal("Export replaced an existing folder")
	}
}

func TestVerifyDetectsDamage(t *testing.T) {
	s, _, _ := fourRuns(t)
	ctx := context.Background()
	list := mustList(t, s)
	if err := s.Verify(ctx, testUDID, list[0].ID); err != nil {
		t.Fatal(err)
	}
	blob := backupfmt.BlobPath(list[0].Path, backupfmt.FileID("HomeDomain", "Library/f000004"))
	if err := os.Remove(blob); err != nil {
		t.Fatal(err)
	}
	err := s.Verify(ctx, testUDID, list[0].ID)
	if !errors.Is(err, ErrInvalidBackup) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Verify of a damaged snapshot: %v, want a missing blob", err)
	}
	if err := s.Verify(ctx, testUDID, "20990101-000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Verify unknown: %v, want ErrNotFound", err)
	}
}

func TestPruneAsksFirst(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: epoch, step: 24 * time.Hour}
	s := openStore(t, dir, testOptions(clock))
	dev := newFakeDevice(testUDID, 20, 2000, 12)
	for i := 0; i < 8; i++ {
		dev.change(30)
		runBackup(t, s, dev)
	}
	clock.t = clock.t.Add(60 * 24 * time.Hour) // everything is old now
	ctx := context.Background()
	policy := DefaultPolicy()
	d, deleted, err := s.Prune(ctx, testUDID, policy, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !d.NeedsApproval() || len(deleted) != 0 || len(mustList(t, s)) != 8 {
		t.Fatalf("Prune without approval deleted %v (pending %d)", deleted, len(d.Pending))
	}
	d, deleted, err = s.Prune(ctx, testUDID, policy, PruneOptions{Approve: true, DryRun: true})
	if err != nil || len(deleted) != 0 {
		t.Fatalf("dry run deleted %v: %v", deleted, err)
	}
	_, deleted, err = s.Prune(ctx, testUDID, policy, PruneOptions{Approve: true})
	if err != nil || len(deleted) != len(d.Pending) || len(deleted) == 0 {
		t.Fatalf("approved prune deleted %v, want %d: %v", deleted, len(d.Pending), err)
	}
	l := mustList(t, s)
	if !l[len(l)-1].Latest || len(l) != 8-len(deleted) {
		t.Fatalf("after prune: %d left, latest kept %v", len(l), l[len(l)-1].Latest)
	}
	if deleted[0] >= l[0].ID {
		t.Fatalf("prune deleted %v but kept older %s", deleted, l[0].ID)
	}
}

func TestResolveLocation(t *testing.T) {
	dir := t.TempDir()
	if got, _ := ResolveLocation(dir); got != dir {
		t.Errorf("plain folder resolves to %s", got)
	}
	os.Mkdir(filepath.Join(dir, VolumeRootDir), 0o755)
	if got, _ := ResolveLocation(dir); got != filepath.Join(dir, VolumeRootDir) {
		t.Errorf("folder with Snapback.Backups resolves to %s", got)
	}
	if got, _ := ResolveLocation("/"); got != "/"+VolumeRootDir {
		t.Errorf("volume root / resolves to %s", got)
	}
	t.Setenv("XDG_DATA_HOME", "/data")
	if got, _ := DefaultLocation(); got != "/data/snapback/Backups" {
		t.Errorf("DefaultLocation = %s", got)
	}
	t.Setenv("XDG_DATA_HOME", "relative")
	home, _ := os.UserHomeDir()
	if got, _ := DefaultLocation(); got != filepath.Join(home, ".local/share/snapback/Backups") {
		t.Errorf("DefaultLocation with a relative XDG_DATA_HOME = %s", got)
	}
}

func TestCopyFallbackOnFilesystemsWithoutLinks(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(&fakeClock{t: epoch, step: time.Hour})
	opts.Clone = CloneCopy // what probing finds on exFAT/FAT32
	s := openStore(t, dir, opts)
	dev := newFakeDevice(testUDID, 10, 1000, 13)
	first := runBackup(t, s, dev)
	want := hashTree(t, first.Path)
	dev.change(10)
	runBackup(t, s, dev)
	l := mustList(t, s)
	if hashTree(t, l[0].Path) != want {
		t.Fatal("first snapshot changed")
	}
	if l[0].UniqueSize != l[0].TotalSize {
		t.Fatalf("full-copy snapshot unique %d != total %d", l[0].UniqueSize, l[0].TotalSize)
	}
}
