//go:build linux

package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/internal/testenv"
)

// loopDisk is a filesystem in an image file (journaled ext4 unless newLoopDiskFS says
// otherwise), mounted like a USB disk.
type loopDisk struct {
	t          *testing.T
	image, mnt string
	options    string // mount options besides loop
}

func newLoopDisk(t *testing.T, sizeMB int) *loopDisk {
	t.Helper()
	return newLoopDiskFS(t, "ext4", sizeMB)
}

// newLoopDiskFS makes and mounts a loop disk of filesystem fstype: ext4, btrfs or xfs (at
// least 300 MB).
func newLoopDiskFS(t *testing.T, fstype string, sizeMB int) *loopDisk {
	t.Helper()
	mkfs := map[string][]string{
		"ext4":  {"-q", "-F", "-j", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-L", "SnapbackTest"},
		"btrfs": {"-q", "-f", "-L", "SnapbackTest"},
		"xfs":   {"-q", "-f", "-L", "SnapbackTest"},
	}[fstype]
	if mkfs == nil {
		t.Fatalf("newLoopDiskFS: no mkfs options for %q", fstype)
	}
	testenv.RequireTool(t, "mkfs."+fstype, "mount", "umount")
	d := &loopDisk{t: t, image: filepath.Join(t.TempDir(), "disk.img"), mnt: t.TempDir()}
	f, err := os.Create(d.image)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(sizeMB) << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs."+fstype, append(mkfs, d.image)...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.%s: %v: %s", fstype, err, out)
	}
	d.mount()
	t.Cleanup(func() { syscall.Unmount(d.mnt, syscall.MNT_DETACH) })
	return d
}

func (d *loopDisk) mount() {
	d.t.Helper()
	opts := "loop"
	if d.options != "" {
		opts += "," + d.options
	}
	if out, err := exec.Command("mount", "-o", opts, d.image, d.mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(d.t, "mount -o loop (needs root and loop devices): %v: %s", err, out)
	}
}

func (d *loopDisk) unmount() {
	d.t.Helper()
	if out, err := exec.Command("umount", d.mnt).CombinedOutput(); err != nil {
		d.t.Fatalf("umount: %v: %s", err, out)
	}
}

// TestBackupDiskUnplugged is issue 11's first "done when": a backup location on a mounted
// ext4 disk, one backup, the disk unmounted: snapback backup refuses with the disk-missing
// exit code, says "not connected" and names the location, and writes nothing into the empty
// mount point; the disk mounted again, the next backup is incremental onto the first.
func TestBackupDiskUnplugged(t *testing.T) {
	dir := cfgTestEnv(t)
	disk := newLoopDisk(t, 512)
	writeConfig(t, dir, "location: "+disk.mnt+"\n")
	sim := startSim(t)
	id, agent := addDevice(t, sim, 0, "18.1", 80, backupsim.Options{Files: 60, TotalSize: 2 << 20, Seed: 3})

	if out, code := runSnapback(t, "backup", "--udid", id.UDID); code != 0 {
		t.Fatalf("first backup: exit %d\n%s", code, out)
	}
	st, err := store.Open(context.Background(), disk.mnt, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	vol, err := st.Volume()
	if err != nil || vol.Identity.Type != "ext4" || vol.Identity.Mount != disk.mnt {
		t.Fatalf("recorded identity %+v, %v; want ext4 mounted at %s", vol.Identity, err, disk.mnt)
	}

	disk.unmount()
	out, code := runSnapback(t, "backup", "--udid", id.UDID)
	if code != failure.ExitDiskMissing || !strings.Contains(out, "not connected") || !strings.Contains(out, disk.mnt) {
		t.Fatalf("backup with the disk unmounted: exit %d, want %d, saying \"not connected\" and %s:\n%s", code, failure.ExitDiskMissing, disk.mnt, out)
	}
	t.Logf("refused as: %s", out)
	entries, err := os.ReadDir(disk.mnt)
	if err != nil || len(entries) != 0 {
		t.Fatalf("the empty mount point now holds %d entries (%v)", len(entries), err)
	}
	if n := agent.Counters().Backups; n != 1 {
		t.Errorf("the device was backed up %d times, want 1 (the refused run must not reach it)", n)
	}

	disk.mount()
	agent.Mutate(5)
	if out, code := runSnapback(t, "backup", "--udid", id.UDID); code != 0 {
		t.Fatalf("backup after remounting: exit %d\n%s", code, out)
	}
	st, err = store.Open(context.Background(), disk.mnt, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := st.List(id.UDID)
	if err != nil || len(snaps) != 2 || snaps[1].Kind != store.KindIncremental {
		t.Fatalf("after remount: %+v, %v; want the first snapshot and an incremental latest", snaps, err)
	}
	for _, sn := range snaps {
		if err := st.Verify(context.Background(), id.UDID, sn.ID); err != nil {
			t.Errorf("verify %s: %v", sn.ID, err)
		}
	}
}
