//go:build linux

package cli

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/internal/testenv"
)

// TestDiskFillsDuringTransfer: the backup disk (a small real tmpfs) fills while the simulated
// device sends its files. snapback backup fails with the no-space class and exit code, naming
// the disk (not the cable), and every committed snapshot is unchanged.
func TestDiskFillsDuringTransfer(t *testing.T) {
	dir := cfgTestEnv(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	writeConfig(t, dir, "location: "+mnt+"\n")
	sim := startSim(t)
	id, _ := addDevice(t, sim, 0, "18.1", 80, backupsim.Options{Files: 40, TotalSize: 4 << 20, Seed: 9, RequiredFreeSpace: 1 << 20})
	big, _ := addDevice(t, sim, 1, "18.1", 80, backupsim.Options{Files: 120, TotalSize: 100 << 20, Seed: 10,
		// It asks for little free space up front (real devices ask for an estimate that can be
		// low), so the disk fills during the transfer rather than at the check.
		RequiredFreeSpace: 1 << 20})
	if out, code := runSnapback(t, "backup", "--udid", id.UDID); code != 0 {
		t.Fatalf("first backup: exit %d\n%s", code, out)
	}
	st, err := store.Open(context.Background(), mnt, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := st.List(id.UDID)
	want := hashTree(t, before[0].Path)

	// A second device holds more than the disk has room for; the free-space check at the
	// start passes (the device does not say how much it will send), the disk fills mid-way.
	out, code := runSnapback(t, "backup", "--udid", big.UDID)
	if code != failure.ExitNoSpace || !strings.Contains(out, "space") || strings.Contains(out, "cable") {
		t.Fatalf("backup onto a disk that fills: exit %d, want %d (no space), not the cable:\n%s", code, failure.ExitNoSpace, out)
	}
	t.Logf("refused as: %s", out)
	after, _ := st.List(id.UDID)
	if len(after) != len(before) || hashTree(t, after[0].Path) != want {
		t.Fatal("a run that filled the disk changed the committed backups")
	}
}
