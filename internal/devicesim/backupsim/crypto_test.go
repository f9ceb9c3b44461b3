package backupsim

import (
	"path/filepath"
	"reflect"
	"testing"

	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
)

const testPassword = "hashcat"

// An encrypting device produces a backup that backupcrypto opens with the password: the
// keybag unlocks, Manifest.db decrypts, every blob decrypts to the device's bytes. An
// incremental re-uploads only changed files, whose unchanged neighbours keep their keys.
func TestEncryptedBackups(t *testing.T) {
	state := t.TempDir()
	opts := Options{Seed: 31, Files: 150, StateDir: state, Password: testPassword, KDFRounds: 1000}
	d := newTestDevice(t, opts)
	if !d.WillEncrypt() {
		t.Fatal("WillEncrypt = false with a password")
	}
	h := newHost(t)
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	verifyFolder(t, d, h.root)
	m, _ := backupfmt.ReadManifest(filepath.Join(h.root, testUDID, "Manifest.plist"))
	if _, err := backupcrypto.Unlock(m.BackupKeyBag, []byte("wrong")); err == nil {
		t.Error("the keybag unlocks with a wrong password")
	}

	before := d.Files()
	d.Mutate(30)
	changed, _ := changedRegular(before, d.Files())
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 || d.Counters().LastFull || d.Counters().LastFilesUploaded != int64(changed) {
		t.Fatalf("encrypted incremental: %v %+v; want %d files", res, d.Counters(), changed)
	}
	verifyFolder(t, d, h.root)

	// Restart: same keybag, so the next backup is still incremental and decryptable.
	d2 := newTestDevice(t, opts)
	d2.Mutate(10)
	if res := h.session(t, d2, nil, backupReq(false)); errorCode(t, res) != 0 || d2.Counters().LastFull {
		t.Fatalf("after restart: %v full=%v; want incremental", res, d2.Counters().LastFull)
	}
	verifyFolder(t, d2, h.root)

	// Restore needs the password.
	req := restoreReq()
	if res := h.session(t, d2, nil, req); errorCode(t, res) != 207 {
		t.Errorf("restore without the password: %v; want 207", res)
	}
	backedUp := d2.Files()
	d2.Mutate(20)
	req["Options"].(map[string]any)["Password"] = testPassword
	if res := h.session(t, d2, nil, req); errorCode(t, res) != 0 {
		t.Fatalf("restore with the password: %v", res)
	}
	if got := d2.Files(); !reflect.DeepEqual(got, backedUp) {
		t.Errorf("restored content differs from the backup (%d vs %d entries)", len(got), len(backedUp))
	}

	// A new password means a new keybag: the next backup is full again.
	opts.Password = "another"
	d3 := newTestDevice(t, opts)
	if res := h.session(t, d3, nil, backupReq(false)); errorCode(t, res) != 0 || !d3.Counters().LastFull {
		t.Errorf("after a password change: %v full=%v; want full", res, d3.Counters().LastFull)
	}
	verifyFolder(t, d3, h.root)
}
