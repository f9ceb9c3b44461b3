package backupsim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupfmt"
)

func changeReq(old, new *string) map[string]any {
	r := map[string]any{"MessageName": "ChangePassword", "TargetIdentifier": testUDID}
	if old != nil {
		r["OldPassword"] = *old
	}
	if new != nil {
		r["NewPassword"] = *new
	}
	return r
}

func ptr(s string) *string { return &s }

// ChangePassword walks a device through enable → change → disable the way a host would,
// with a backup after every step proving the device really re-keyed (or stopped
// encrypting), refusals for the wrong state and the wrong old password, and the setting
// surviving a restart through StateDir without the password being written there.
func TestChangePassword(t *testing.T) {
	state := t.TempDir()
	opts := Options{Seed: 7, Files: 60, StateDir: state, KDFRounds: 1000}
	d := newTestDevice(t, opts)
	h := newHost(t)
	var r recorder

	if res := h.session(t, d, &r, changeReq(ptr("x"), nil)); errorCode(t, res) != 100 || !strings.Contains(res["ErrorDescription"].(string), "not enabled") {
		t.Errorf("disable while off: %v; want 100 not enabled", res)
	}
	if res := h.session(t, d, &r, changeReq(nil, ptr("first secret"))); errorCode(t, res) != 0 {
		t.Fatalf("enable: %v", res)
	}
	if !d.WillEncrypt() {
		t.Fatal("WillEncrypt false after enabling")
	}
	if names, _ := r.posted(); !reflect.DeepEqual(names, []string{NotifyDomainChanged}) {
		t.Errorf("posted %v; want only domain_changed (no passcode prompt configured)", names)
	}
	if res := h.session(t, d, nil, changeReq(nil, ptr("again"))); errorCode(t, res) != 100 || !strings.Contains(res["ErrorDescription"].(string), "already enabled") {
		t.Errorf("enable while on: %v; want 100 already enabled", res)
	}
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	verifyFolderPassword(t, d, h.root, "first secret")

	if res := h.session(t, d, nil, changeReq(ptr("wrong"), ptr("second secret"))); errorCode(t, res) != 207 || res["ErrorDescription"] != "Invalid password" {
		t.Errorf("change with a wrong old password: %v; want 207 Invalid password", res)
	}
	if res := h.session(t, d, nil, changeReq(ptr("first secret"), ptr("second secret"))); errorCode(t, res) != 0 {
		t.Fatalf("change: %v", res)
	}
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 || !d.Counters().LastFull {
		t.Fatalf("backup after change: %v full=%v; want a full backup under the new keybag", res, d.Counters().LastFull)
	}
	verifyFolderPassword(t, d, h.root, "second secret")

	// Restart with StateDir: the changed setting holds, the password is nowhere on disk.
	d2 := newTestDevice(t, opts)
	if !d2.WillEncrypt() {
		t.Fatal("restarted device forgot that encryption is on")
	}
	walkNoSecret(t, state, "second secret", "first secret")
	if res := h.session(t, d2, nil, backupReq(false)); errorCode(t, res) != 0 || d2.Counters().LastFull {
		t.Fatalf("backup after restart: %v full=%v; want incremental", res, d2.Counters().LastFull)
	}
	verifyFolderPassword(t, d2, h.root, "second secret")

	if res := h.session(t, d2, nil, changeReq(ptr("first secret"), nil)); errorCode(t, res) != 207 {
		t.Errorf("disable with the old password: %v; want 207", res)
	}
	if res := h.session(t, d2, nil, changeReq(ptr("second secret"), nil)); errorCode(t, res) != 0 {
		t.Fatalf("disable: %v", res)
	}
	if d2.WillEncrypt() {
		t.Fatal("WillEncrypt true after disabling")
	}
	if res := h.session(t, d2, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	verifyFolder(t, d2, h.root)
	if m, _ := backupfmt.ReadManifest(filepath.Join(h.root, testUDID, "Manifest.plist")); m.IsEncrypted {
		t.Error("backup after disabling is encrypted")
	}
	// Off is recorded too: a device configured with a password stays off after a restart.
	opts.Password = "configured"
	if d3 := newTestDevice(t, opts); d3.WillEncrypt() {
		t.Error("restart with Options.Password re-enabled encryption that ChangePassword turned off")
	}
	c := d2.Counters()
	if c.PasswordChanges != 3 || c.FailedPasswordChanges != 4 { // counters persist across the restart
		t.Errorf("counters %+v; want 3 changes, 4 refusals", c)
	}
}

// walkNoSecret fails if any file under dir contains one of the secrets.
func walkNoSecret(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s contains a password", p)
			}
			if j, _ := json.Marshal([]byte(s)); strings.Contains(string(b), strings.Trim(string(j), `"`)) {
				t.Errorf("%s contains a password in base64", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// On iOS 13 and later ChangePassword waits for the device passcode like a backup does:
// presented/dismissed are posted, and a passcode that never comes ends in 208 with
// nothing changed.
func TestChangePasswordPasscode(t *testing.T) {
	id := Identity{UDID: testUDID, ProductVersion: "13.2"}
	d, err := New(Options{Identity: id, Files: 10, KDFRounds: 1000, PasscodeDelay: 50 * time.Millisecond, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := newHost(t)
	var r recorder
	if res := h.session(t, d, &r, changeReq(nil, ptr("pw"))); errorCode(t, res) != 0 {
		t.Fatalf("enable: %v", res)
	}
	if names, _ := r.posted(); !reflect.DeepEqual(names, []string{NotifyPasscodePresented, NotifyPasscodeDismissed, NotifyDomainChanged}) {
		t.Errorf("posted %v; want presented, dismissed, domain_changed", names)
	}

	d, err = New(Options{Identity: id, Files: 10, KDFRounds: 1000, PasscodeDelay: -1, PasscodeTimeout: 50 * time.Millisecond, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res := h.session(t, d, nil, changeReq(nil, ptr("pw"))); errorCode(t, res) != 208 {
		t.Errorf("passcode timeout: %v; want 208", res)
	}
	if d.WillEncrypt() {
		t.Error("encryption turned on although the passcode was never entered")
	}
	old := Identity{UDID: testUDID, ProductVersion: "12.4"}
	if d, _ := New(Options{Identity: old}); d.changePasscodeRequired() {
		t.Error("iOS 12 asks for the passcode on ChangePassword")
	}
}
