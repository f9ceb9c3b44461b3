//go:build linux

package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"snapback/internal/testenv"
)

// mountTmpfs mounts a size-limited tmpfs on dir (root only). Under CI=true a failure fails
// the test, so a CI machine without the privilege cannot pass by skipping.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, "mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
}

func isEmptyDir(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries) == 0
}

func TestEmptyMountPointRefused(t *testing.T) {
	mnt := t.TempDir()
	mountTmpfs(t, mnt, "16m")
	opts := testOptions(&fakeClock{t: epoch, step: 24 * time.Hour})
	opts.CreateLocation = false
	s := openStore(t, mnt, opts)
	if s.Location() != filepath.Join(mnt, VolumeRootDir) {
		t.Fatalf("location on a volume root = %s, want %s", s.Location(), filepath.Join(mnt, VolumeRootDir))
	}
	dev := newFakeDevice(testUDID, 10, 500, 8)
	runBackup(t, s, dev)
	dev.change(10)
	runBackup(t, s, dev)
	vol, err := s.Volume()
	if err != nil {
		t.Fatal(err)
	}

	// The disk goes away: the mount point is an empty folder on the parent filesystem.
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opts.ExpectVolumeID = vol.ID
	_, err = Open(ctx, mnt, opts)
	var de *DiskError
	if !errors.Is(err, ErrDiskNotConnected) || !errors.As(err, &de) || de.Fix == "" {
		t.Fatalf("Open on an empty mount point: %v, want ErrDiskNotConnected with a fix", err)
	}
	// A store opened while the disk was there must refuse too, for every operation.
	if _, err := s.Begin(ctx, testUDID, BeginOptions{}); !errors.Is(err, ErrDiskNotConnected) {
		t.Errorf("Begin: %v, want ErrDiskNotConnected", err)
	}
	if _, _, err := s.Prune(ctx, testUDID, Policy{MaxExtraPercent: 1}, PruneOptions{Approve: true}); !errors.Is(err, ErrDiskNotConnected) {
		t.Errorf("Prune: %v, want ErrDiskNotConnected", err)
	}
	if _, err := s.List(testUDID); !errors.Is(err, ErrDiskNotConnected) {
		t.Errorf("List: %v, want ErrDiskNotConnected", err)
	}
	if err := s.Recover(ctx); !errors.Is(err, ErrDiskNotConnected) {
		t.Errorf("Recover: %v, want ErrDiskNotConnected", err)
	}
	if !isEmptyDir(t, mnt) {
		t.Fatal("something was written to the empty mount point")
	}

	// Without a recorded volume ID, an fstab entry for the unmounted mount point still stops
	// a first backup from filling the parent disk.
	fstab := filepath.Join(t.TempDir(), "fstab")
	os.WriteFile(fstab, []byte("# test\nUUID=1234 "+mnt+" ext4 defaults,nofail 0 2\n"), 0o644)
	opts.ExpectVolumeID, opts.Fstab = "", fstab
	s2 := openStore(t, mnt, opts)
	if _, err := s2.Begin(ctx, testUDID, BeginOptions{}); !errors.Is(err, ErrDiskNotConnected) {
		t.Errorf("first Begin on an unmounted fstab mount point: %v, want ErrDiskNotConnected", err)
	}
	if !isEmptyDir(t, mnt) {
		t.Fatal("something was written to the empty mount point")
	}
}

func TestMissingDiskRefused(t *testing.T) {
	base := t.TempDir()
	disk := filepath.Join(base, "media", "Backup")
	os.MkdirAll(disk, 0o755)
	loc := filepath.Join(disk, "iPhone")
	opts := testOptions(&fakeClock{t: epoch, step: 24 * time.Hour})
	opts.CreateLocation = false
	s := openStore(t, loc, opts)
	runBackup(t, s, newFakeDevice(testUDID, 5, 100, 9))
	vol, _ := s.Volume()
	ctx := context.Background()

	// The disk is unplugged: its mount folder is gone (macOS /Volumes, udisks /media).
	os.RemoveAll(disk)
	opts.ExpectVolumeID = vol.ID
	if _, err := Open(ctx, loc, opts); !errors.Is(err, ErrDiskNotConnected) {
		t.Fatalf("Open with the disk gone: %v, want ErrDiskNotConnected", err)
	}
	opts.ExpectVolumeID = ""
	s2 := openStore(t, loc, opts) // never used here as far as it knows: opening is harmless
	if _, err := s2.Begin(ctx, testUDID, BeginOptions{}); !errors.Is(err, ErrDiskNotConnected) {
		t.Fatalf("Begin with the parent folder gone: %v, want ErrDiskNotConnected", err)
	}
	if exists(disk) {
		t.Fatal("Begin recreated the missing disk's folder")
	}

	// Another backup disk mounted in the same place.
	other := filepath.Join(base, "other")
	s3 := openStore(t, other, testOptions(&fakeClock{t: epoch, step: time.Hour}))
	runBackup(t, s3, newFakeDevice(testUDID, 5, 100, 9))
	opts.ExpectVolumeID = vol.ID
	if _, err := Open(ctx, other, opts); !errors.Is(err, ErrDiskNotConnected) {
		t.Fatalf("Open on a different backup disk: %v, want ErrDiskNotConnected", err)
	}
}

func TestDiskFullMidRun(t *testing.T) {
	mnt := t.TempDir()
	mountTmpfs(t, mnt, "3m")
	opts := testOptions(&fakeClock{t: epoch, step: 24 * time.Hour})
	s := openStore(t, mnt, opts)
	dev := newFakeDevice(testUDID, 40, 8000, 10)
	runBackup(t, s, dev)
	dev.change(10)
	runBackup(t, s, dev)
	want := committedHashes(t, s, testUDID)

	// The device sends more than fits: the engine's write fails with ENOSPC.
	ctx := context.Background()
	r, err := s.Begin(ctx, testUDID, BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		dev.files[fmt.Sprintf("Media/big%04d", i)] = make([]byte, 64<<10)
	}
	err = dev.backup(r.Root(), nil)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("engine err = %v, want ENOSPC", err)
	}
	if _, err := r.Commit(ctx, CommitMeta{}); !errors.Is(err, ErrInvalidBackup) {
		t.Fatalf("Commit of a half-written backup: %v, want ErrInvalidBackup", err)
	}
	if err := r.Abort(); err != nil {
		t.Fatalf("Abort on a full disk: %v", err)
	}
	got := committedHashes(t, s, testUDID)
	for id, h := range want {
		if got[id] != h {
			t.Errorf("snapshot %s changed by a run that filled the disk", id)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d snapshots, want %d", len(got), len(want))
	}

	// The free-space check refuses a run the engine says will not fit.
	s.opts.MinFreeBytes = 0
	if _, err := s.Begin(ctx, testUDID, BeginOptions{ExpectedBytes: 10 << 20}); !errors.Is(err, ErrInsufficientSpace) {
		t.Errorf("Begin expecting 10 MB on a 3 MB disk: %v, want ErrInsufficientSpace", err)
	}

	// The device drops the big files again; the next run fits and succeeds.
	for i := 0; i < 1000; i++ {
		delete(dev.files, fmt.Sprintf("Media/big%04d", i))
	}
	dev.change(5)
	runBackup(t, s, dev)
	after := committedHashes(t, s, testUDID)
	for id, h := range want {
		if after[id] != h {
			t.Errorf("snapshot %s changed by the run after the disk filled", id)
		}
	}
}
