package engine

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
	"snapback/internal/store"
	"snapback/internal/testenv"
)

// storeBackup runs one backup of the rig's device into the snapshot store and commits it.
func storeBackup(t *testing.T, r *rig, st *store.Store) store.Snapshot {
	t.Helper()
	ctx := context.Background()
	run, err := st.Begin(ctx, r.udid, store.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.backup(t, run.Root(), false, nil)
	if err != nil {
		run.Abort()
		t.Fatalf("backup: %v", err)
	}
	kind := store.KindIncremental
	if res.Backup.FullBackup {
		kind = store.KindFull
	}
	snap, err := run.Commit(ctx, store.CommitMeta{Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// olderSnapshotFixture backs the device up twice into a store with changes in between and
// after, and returns the older snapshot (not the latest) and the content it holds.
func olderSnapshotFixture(t *testing.T, r *rig) (*store.Store, store.Snapshot, []backupsim.File) {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := storeBackup(t, r, st)
	want := r.agent.Files()
	r.agent.Mutate(30)
	storeBackup(t, r, st)
	r.agent.Mutate(20)
	if reflect.DeepEqual(r.agent.Files(), want) {
		t.Fatal("mutations changed nothing")
	}
	older, err := st.Get(r.udid, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if older.Latest || filepath.Base(older.Path) == r.udid {
		t.Fatalf("fixture: %+v is not an older snapshot folder", older)
	}
	return st, older, want
}

// TestRestoreOlderSnapshot: restoring an older snapshot folder (named by its ID, not the
// UDID) leaves the device holding exactly that snapshot's content, verified by the device
// byte for byte, and the snapshot folder is bit-identical afterwards.
func TestRestoreOlderSnapshot(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 31, Files: 120, PasscodeRequired: new(bool)}, devicesim.DeviceConfig{})
	_, older, want := olderSnapshotFixture(t, r)
	before := treeHash(t, older.Path, "")

	var ev events
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Restore(ctx, RestoreRequest{UDID: r.udid, SourceDir: older.Path, System: true, Reboot: false,
		Events: ev.add, LockRetry: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := r.agent.Files(); !reflect.DeepEqual(got, want) {
		t.Errorf("device content after restore differs from the snapshot (%d vs %d entries)", len(got), len(want))
	}
	if c := r.agent.Counters(); c.Restores != 1 || c.FailedRestores != 0 {
		t.Errorf("counters %+v; want one restore", c)
	}
	if after := treeHash(t, older.Path, ""); !reflect.DeepEqual(after, before) {
		t.Error("the snapshot folder changed during the restore")
	}
	evs := ev.all()
	last := evs[len(evs)-1]
	if last.Kind != mobilebackup2.EventFinished || last.FilesDone != res.Restore.FilesSent || res.Restore.FilesSent < int64(len(want)/2) ||
		last.BytesExpected < last.BytesDone {
		t.Errorf("last event %+v, result %+v", last, res.Restore)
	}
}

// TestRestoreWrongSource: an unfinished folder is refused before the device is asked.
func TestRestoreWrongSource(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 32, Files: 20, PasscodeRequired: new(bool)}, devicesim.DeviceConfig{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Info.plist"), []byte("<plist/>"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Restore(ctx, RestoreRequest{UDID: r.udid, SourceDir: dir, LockRetry: 10 * time.Millisecond})
	if !errors.Is(err, failure.Incomplete) {
		t.Errorf("err = %v; want ErrIncomplete", err)
	}
	if c := r.agent.Counters(); c.Restores != 0 || c.FailedRestores != 0 {
		t.Errorf("device was asked to restore: %+v", c)
	}
}

// TestIdevicebackup2RestoresSnapshot: a Snapback snapshot is a standard backup folder that
// idevicebackup2 restores too. Its folder is named by the snapshot ID, and idevicebackup2
// reads DIR/<UDID>/, so the snapshot is first exported (`snapback snapshots export ID DEST`
// writes DEST/<UDID>/).
func TestIdevicebackup2RestoresSnapshot(t *testing.T) {
	bin := testenv.RequireTool(t, "idevicebackup2")
	r := newRig(t, backupsim.Options{Seed: 33, Files: 100, PasscodeRequired: new(bool)}, devicesim.DeviceConfig{})
	st, older, want := olderSnapshotFixture(t, r)
	dest := t.TempDir()
	out, err := st.Export(context.Background(), r.udid, older.ID, dest)
	if err != nil || out != filepath.Join(dest, r.udid) {
		t.Fatalf("export: %q %v", out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// 1.3.0 has --system and --settings, and reboots unless --no-reboot.
	cmd := exec.CommandContext(ctx, bin, "-u", r.udid, "restore", "--system", "--settings", "--no-reboot", "--skip-apps", dest)
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "Restore Successful") {
		t.Fatalf("idevicebackup2 restore: %v\n%s", err, b)
	}
	if got := r.agent.Files(); !reflect.DeepEqual(got, want) {
		t.Errorf("device content after restore differs from the snapshot (%d vs %d entries)", len(got), len(want))
	}
}
