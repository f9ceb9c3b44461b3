//go:build linux

package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapback/internal/failure"
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

// bindMount mounts dir on mnt, as the disk coming back (root only).
func bindMount(t *testing.T, dir, mnt string) {
	t.Helper()
	out, err := exec.Command("mount", "--bind", dir, mnt).CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, "bind mount (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
}

func TestEmptyMountPointRefused(t *testing.T) {
	// The "disk" is a tmpfs that stays mounted elsewhere; bind-mounting it on mnt and
	// unmounting it again plugs and unplugs the same filesystem.
	disk, mnt := t.TempDir(), t.TempDir()
	mountTmpfs(t, disk, "16m")
	bindMount(t, disk, mnt)
	opts := testOptions(&fakeClock{t: epoch, step: 24 * time.Hour})
	opts.CreateLocation = false
	// Not in fstab, no ExpectVolumeID: only what this computer remembers tells the empty
	// mount point from a new folder (a udisks or hand-made mount).
	opts.Known = filepath.Join(t.TempDir(), "destinations.json")
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
	if vol.Identity.Mount != mnt || vol.Identity.Type != "tmpfs" {
		t.Errorf("recorded identity %+v, want tmpfs mounted at %s", vol.Identity, mnt)
	}

	// The disk goes away: the mount point is an empty folder on the parent filesystem.
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = Open(ctx, mnt, opts)
	var de *DiskError
	if !errors.Is(err, ErrDiskNotConnected) || !errors.As(err, &de) || de.Fix == "" {
		t.Fatalf("Open on an empty mount point: %v, want ErrDiskNotConnected with a fix", err)
	}
	if failure.ExitCode(err) != failure.ExitDiskMissing || !strings.Contains(err.Error(), "not connected") || !strings.Contains(err.Error(), mnt) {
		t.Errorf("error %q (exit %d): want the disk-missing class naming %s", err, failure.ExitCode(err), mnt)
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

	// The disk comes back: the same store path, and the next backup is incremental on the
	// earlier ones.
	bindMount(t, disk, mnt)
	s2 := openStore(t, mnt, opts)
	if s2.Location() != s.Location() {
		t.Errorf("location after remount %s, want %s", s2.Location(), s.Location())
	}
	before := len(mustList(t, s2))
	dev.change(5)
	if snap := runBackup(t, s2, dev); snap.Kind != KindIncremental || len(mustList(t, s2)) != before+1 {
		t.Errorf("backup after remount: kind %s, %d snapshots; want incremental onto %d", snap.Kind, len(mustList(t, s2)), before)
	}

	// Without anything remembered, an fstab entry for the unmounted mount point still stops
	// a first backup from filling the parent disk.
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	fstab := filepath.Join(t.TempDir(), "fstab")
	os.WriteFile(fstab, []byte("# test\nUUID=1234 "+mnt+" ext4 defaults,nofail 0 2\n"), 0o644)
	opts.Known, opts.Fstab = "-", fstab
	s3 := openStore(t, mnt, opts)
	if _, err := s3.Begin(ctx, testUDID, BeginOptions{}); !errors.Is(err, ErrDiskNotConnected) {
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
	got := checkUnchanged(t, s, want, "by a run that filled the disk")
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
	checkUnchanged(t, s, want, "by the run after the disk filled")
}

// fillDisk writes a filler file in dir until the filesystem is full and returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Small writes take the last partial blocks too.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return path
}

func TestZeroBytesFree(t *testing.T) {
	mnt := t.TempDir()
	mountTmpfs(t, mnt, "4m")
	opts := testOptions(&fakeClock{t: epoch, step: 24 * time.Hour})
	s := openStore(t, mnt, opts)
	dev := newFakeDevice(testUDID, 20, 8000, 11)
	runBackup(t, s, dev)
	dev.change(40)
	runBackup(t, s, dev)
	dev.change(40)
	runBackup(t, s, dev)
	fillDisk(t, mnt)
	if free, _ := freeBytes(mnt); free != 0 {
		t.Fatalf("%d bytes free after filling", free)
	}
	ctx := context.Background()

	list := mustList(t, s)
	if len(list) != 3 {
		t.Fatalf("%d snapshots, want 3", len(list))
	}
	for _, sn := range list {
		if err := s.Verify(ctx, testUDID, sn.ID); err != nil {
			t.Errorf("verify %s at 0 bytes free: %v", sn.ID, err)
		}
	}
	// A backup cannot start: no space, with the disk and the bytes, not the cable.
	_, err := s.Begin(ctx, testUDID, BeginOptions{ExpectedBytes: 1 << 20})
	if failure.ClassOf(err) != failure.NoSpace || failure.ExitCode(err) != failure.ExitNoSpace ||
		!strings.Contains(err.Error(), mnt) || !strings.Contains(err.Error(), "needed") || strings.Contains(failure.Text(err), "cable") {
		t.Errorf("Begin on a full disk: %v (class %s), want no-space naming %s and the bytes needed", err, failure.ClassOf(err), mnt)
	}
	// The user frees space: deleting the oldest snapshot works and frees its bytes.
	if err := s.Delete(ctx, testUDID, list[0].ID); err != nil {
		t.Fatalf("delete at 0 bytes free: %v", err)
	}
	free, _ := freeBytes(mnt)
	if free < list[0].UniqueSize/2 {
		t.Errorf("%d bytes free after deleting a snapshot of %d unique bytes", free, list[0].UniqueSize)
	}
	if n := len(mustList(t, s)); n != 2 {
		t.Errorf("%d snapshots after delete, want 2", n)
	}
	// Prune holds the same lock and works too.
	fillDisk(t, mnt)
	if _, _, err := s.Prune(ctx, testUDID, Policy{MaxExtraPercent: 1}, PruneOptions{Approve: true}); err != nil {
		t.Errorf("prune at 0 bytes free: %v", err)
	}
}

// TestAnotherDiskInTheSamePlace: a different (empty) disk mounted where the backup disk was
// is refused; `snapback location forget` is the deliberate way to start over on it.
func TestAnotherDiskInTheSamePlace(t *testing.T) {
	disk1, disk2, mnt := t.TempDir(), t.TempDir(), t.TempDir()
	mountTmpfs(t, disk1, "16m")
	mountTmpfs(t, disk2, "16m")
	bindMount(t, disk1, mnt)
	opts := testOptions(&fakeClock{t: epoch, step: 24 * time.Hour})
	opts.CreateLocation = false
	opts.Known = filepath.Join(t.TempDir(), "destinations.json")
	s := openStore(t, mnt, opts)
	dev := newFakeDevice(testUDID, 10, 500, 12)
	runBackup(t, s, dev)
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	bindMount(t, disk2, mnt)
	ctx := context.Background()
	if _, err := Open(ctx, mnt, opts); !errors.Is(err, ErrDiskNotConnected) || !strings.Contains(failure.Text(err), "location forget") {
		t.Fatalf("Open with another disk in place: %v, want disk not connected with the forget command", err)
	}
	if !isEmptyDir(t, mnt) {
		t.Fatal("something was written to the other disk")
	}
	if found, err := ForgetLocation(opts, mnt); err != nil || !found {
		t.Fatalf("ForgetLocation: %v, %v", found, err)
	}
	// The long-lived Store (a daemon's) that saw the old disk follows the user's decision too.
	if snap := runBackup(t, s, dev); snap.Kind != KindFull {
		t.Errorf("first backup on the new disk: %s, want full", snap.Kind)
	}
	s2 := openStore(t, mnt, opts)
	if l, err := s2.List(testUDID); err != nil || len(l) != 1 {
		t.Errorf("new disk after forget: %d snapshots, %v; want its one backup", len(l), err)
	}
	v, _ := s2.Volume()
	if v.Identity.Source == "" || v.ID == "" {
		t.Errorf("new disk's identity %+v", v)
	}
}

// TestDeletedBackupsStartAfresh: the user deletes the backup folder (say the OS data folder)
// on the very disk recorded for it: that is not a missing disk, and the next backup starts
// a new history instead of being refused forever.
func TestDeletedBackupsStartAfresh(t *testing.T) {
	base := t.TempDir()
	if id, err := fsIdentity(base); err != nil || (id.UUID == "" && !stableFSID[id.Type]) {
		t.Skipf("%s is on %s, whose identity cannot tell one disk from another; the guard refuses there instead", base, id)
	}
	loc := filepath.Join(base, "Backups")
	opts := testOptions(&fakeClock{t: epoch, step: 24 * time.Hour})
	opts.Known = filepath.Join(t.TempDir(), "destinations.json")
	s := openStore(t, loc, opts)
	dev := newFakeDevice(testUDID, 5, 300, 13)
	runBackup(t, s, dev)
	if err := os.RemoveAll(loc); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, loc, opts)
	if snap := runBackup(t, s2, dev); snap.Kind != KindFull || len(mustList(t, s2)) != 1 {
		t.Errorf("after deleting the backups on the same disk: %s, %d snapshots; want a new full history", snap.Kind, len(mustList(t, s2)))
	}
}
