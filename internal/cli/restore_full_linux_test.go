//go:build linux

package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/devicesim/simtest"
	"snapback/internal/engine"
	"snapback/internal/store"
	"snapback/internal/testenv"
)

// TestRestoreLatestAtZeroBytesFree: the backup disk (a real tmpfs) is filled to 0 bytes free
// and the user restores the device from its latest backup. The archive step that comes first
// needs no free block (the latest folder is renamed to the pinned archive), the restore
// reads from it, and the simulated device ends up holding the latest backup's content.
func TestRestoreLatestAtZeroBytesFree(t *testing.T) {
	cfgTestEnv(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	id := devicesim.DefaultIdentity(3)
	_, agent := simtest.AddDevice(t, simtest.Start(t), devicesim.DeviceConfig{Identity: id, USB: true, BatteryLevel: 90}, backupsim.Options{
		Files: 60, TotalSize: 2 << 20, Seed: 43, PasscodeRequired: new(bool), KDFRounds: 1000, RequiredFreeSpace: 1 << 20,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A small disk: the free-space check at the start of a backup asks only a little margin.
	st, err := store.Open(ctx, mnt, store.Options{MinFreeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	backup := func() store.Snapshot {
		run, err := st.Begin(ctx, id.UDID, store.BeginOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := engine.Backup(ctx, engine.Request{UDID: id.UDID, Root: run.Root(), LockRetry: 10 * time.Millisecond}); err != nil {
			run.Abort()
			t.Fatal(err)
		}
		snap, err := run.Commit(ctx, store.CommitMeta{})
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	backup()
	agent.Mutate(20)
	latest := backup()
	want := agent.Files()
	before := hashTree(t, st.LatestDir(id.UDID))
	agent.Mutate(20) // the device changes after its last backup; the restore undoes that

	fill(t, mnt)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &fs); err != nil || fs.Bavail != 0 {
		t.Fatalf("%d blocks free after filling (%v)", fs.Bavail, err)
	}
	var out, errOut syncBuffer
	f := restoreFlags{udid: id.UDID, location: st.Location(), noReboot: true, system: true, yes: true}
	if err := runRestore(ctx, f, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("restore at 0 bytes free: %v\n%s", err, errOut.String())
	}
	if got := agent.Files(); !reflect.DeepEqual(got, want) {
		t.Errorf("device content after restore differs from the latest backup (%d vs %d entries)", len(got), len(want))
	}
	a, err := st.Get(id.UDID, store.ArchiveName(id.UDID, latest.Time))
	if err != nil || !a.Pinned || a.Source != latest.ID {
		t.Fatalf("archive of the latest backup: %+v %v\n%s", a, err, errOut.String())
	}
	if hashTree(t, a.Path) != before {
		t.Error("the archive does not hold the latest backup as it was")
	}
	if !strings.Contains(errOut.String(), "Archived the latest backup") || !strings.Contains(out.String(), "Restored the latest backup") {
		t.Errorf("output does not say what happened:\n%s\n%s", out.String(), errOut.String())
	}
}

// fill writes a file until the filesystem at dir has no block left.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for _, n := range []int{len(buf), 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}
