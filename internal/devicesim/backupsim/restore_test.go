package backupsim

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"snapback/internal/backupfmt"
)

func restoreReq() map[string]any {
	return map[string]any{"MessageName": "Restore", "TargetIdentifier": testUDID, "SourceIdentifier": testUDID,
		"Options": map[string]any{"RestoreSystemFiles": false, "RestoreShouldReboot": false, "RestorePreserveSettings": true}}
}

// A restore brings back exactly the content of the backup, verified byte for byte.
func TestRestoreBringsBackBackedUpContent(t *testing.T) {
	state := t.TempDir()
	d := newTestDevice(t, Options{Seed: 13, Files: 200, StateDir: state})
	h := newHost(t)
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	backedUp := d.Files()
	d.Mutate(30)
	d.Mutate(10)
	if reflect.DeepEqual(d.Files(), backedUp) {
		t.Fatal("mutations changed nothing")
	}
	res := h.session(t, d, nil, restoreReq())
	if errorCode(t, res) != 0 {
		t.Fatalf("restore: %v", res)
	}
	if got := d.Files(); !reflect.DeepEqual(got, backedUp) {
		t.Errorf("content after restore differs from the backup (%d vs %d entries)", len(got), len(backedUp))
	}
	regular := 0
	for _, f := range backedUp {
		if f.Flags == backupfmt.FlagFile {
			regular++
		}
	}
	if c := d.Counters(); c.Restores != 1 || c.FilesRestored != int64(regular) {
		t.Errorf("counters %+v; want 1 restore of %d files", c, regular)
	}
	// The restored content survives a restart and keeps mutating deterministically.
	d.Mutate(5)
	want := d.Files()
	d2 := newTestDevice(t, Options{Seed: 13, Files: 200, StateDir: state})
	if !reflect.DeepEqual(d2.Files(), want) {
		t.Error("restored-then-mutated content not reloaded from StateDir")
	}
	// Next backup after a restore: incremental against the same folder works.
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	verifyFolder(t, d, h.root)
}

func TestRestoreFailures(t *testing.T) {
	d := newTestDevice(t, Options{Seed: 14, Files: 80})
	h := newHost(t)
	if res := h.session(t, d, nil, restoreReq()); errorCode(t, res) != 205 {
		t.Errorf("restore without a backup: %v; want 205", res)
	}
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	dir := filepath.Join(h.root, testUDID)
	// A corrupted blob: the device notices.
	var victim File
	for _, f := range d.Files() {
		if f.Flags == backupfmt.FlagFile && f.Size > 10 {
			victim = f
			break
		}
	}
	p := backupfmt.BlobPath(dir, victim.FileID)
	b, _ := os.ReadFile(p)
	b[5] ^= 0xff
	os.WriteFile(p, b, 0o644)
	if res := h.session(t, d, nil, restoreReq()); errorCode(t, res) != 100 {
		t.Errorf("restore of a corrupted blob: %v; want an error", res)
	}
	// A missing blob: 205 like a device.
	os.Remove(p)
	if res := h.session(t, d, nil, restoreReq()); errorCode(t, res) != 205 {
		t.Errorf("restore with a missing blob: %v; want 205", res)
	}
	if c := d.Counters(); c.Restores != 0 || c.FailedRestores != 3 {
		t.Errorf("counters %+v", c)
	}
}
