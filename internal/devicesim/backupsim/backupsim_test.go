package backupsim

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
	"snapback/internal/plistio"
)

const testUDID = "00008110-000A1B2C3D4E5F60"

var no = new(bool)

func newTestDevice(t testing.TB, o Options) *Device {
	t.Helper()
	if o.Identity.UDID == "" {
		o.Identity = Identity{UDID: testUDID, DeviceName: "Test iPhone", ProductType: "iPhone14,5",
			ProductVersion: "17.5.1", BuildVersion: "21F90", SerialNumber: "SIMF0001"}
	}
	if o.Files == 0 {
		o.Files = 300
	}
	if o.TotalSize == 0 {
		o.TotalSize = 3 << 20
	}
	if o.PasscodeRequired == nil {
		o.PasscodeRequired = no
	}
	if o.TempDir == "" && o.StateDir == "" {
		o.TempDir = t.TempDir()
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newHost(t testing.TB) *testHost {
	return &testHost{root: t.TempDir(), udid: testUDID}
}

func backupReq(force bool) map[string]any {
	r := map[string]any{"MessageName": "Backup", "TargetIdentifier": testUDID, "SourceIdentifier": testUDID}
	if force {
		r["Options"] = map[string]any{"ForceFullBackup": true}
	}
	return r
}

func errorCode(t testing.TB, res map[string]any) int64 {
	t.Helper()
	code, ok := plistio.Int(res["ErrorCode"])
	if !ok {
		t.Fatalf("result without an integer ErrorCode: %v", res)
	}
	return code
}

// verifyFolder checks the host folder against the device: Manifest.db lists exactly the
// device's files, every blob has the device's bytes, Snapshot is gone, Status.plist is
// finished.
func verifyFolder(t *testing.T, d *Device, root string) {
	t.Helper()
	verifyFolderPassword(t, d, root, d.opts.Password)
}

// verifyFolderPassword is verifyFolder for a device whose password changed since New.
func verifyFolderPassword(t *testing.T, d *Device, root, password string) {
	t.Helper()
	dir := filepath.Join(root, testUDID)
	if _, err := os.Stat(filepath.Join(dir, "Snapshot")); !os.IsNotExist(err) {
		t.Errorf("Snapshot folder still present (stat err %v)", err)
	}
	st, err := backupfmt.ReadStatus(filepath.Join(dir, "Status.plist"))
	if err != nil || st.SnapshotState != "finished" || st.UUID == "" || st.Version != "3.3" {
		t.Errorf("Status.plist = %+v, %v; want finished with a UUID", st, err)
	}
	m, err := backupfmt.ReadManifest(filepath.Join(dir, "Manifest.plist"))
	bagLen := 1336
	if d.WillEncrypt() {
		bagLen = 1388
	}
	if err != nil || m.IsEncrypted != d.WillEncrypt() || m.Version != "10.0" || len(m.BackupKeyBag) != bagLen || m.Lockdown["UniqueDeviceID"] != testUDID {
		t.Errorf("Manifest.plist = %+v, %v", m, err)
	}
	dbPath := filepath.Join(dir, "Manifest.db")
	var keys *backupcrypto.Keys
	if m.IsEncrypted {
		if keys, err = backupcrypto.Unlock(m.BackupKeyBag, []byte(password)); err != nil {
			t.Fatalf("unlock the backup's keybag: %v", err)
		}
		if len(m.ManifestKey) != 44 {
			t.Errorf("ManifestKey is %d bytes; want 44", len(m.ManifestKey))
		}
		if _, err := backupfmt.OpenManifestDB(dbPath); err == nil {
			t.Error("the encrypted Manifest.db opens as plain SQLite")
		}
		plain := filepath.Join(t.TempDir(), "Manifest.db")
		if err := keys.DecryptManifestDB(m.ManifestKey, dbPath, plain); err != nil {
			t.Fatalf("decrypt Manifest.db: %v", err)
		}
		dbPath = plain
	}
	db, err := backupfmt.OpenManifestDB(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]File{}
	for _, f := range d.Files() {
		want[f.FileID] = f
	}
	seen := 0
	err = db.Each(context.Background(), func(r backupfmt.Record) error {
		f, ok := want[r.FileID]
		if !ok {
			t.Errorf("Manifest.db has %s %q, which the device does not", r.Domain, r.RelativePath)
			return nil
		}
		seen++
		if r.Domain != f.Domain || r.RelativePath != f.RelativePath || r.Flags != f.Flags || r.File.Size != f.Size ||
			r.File.Mode != f.Mode || r.File.LastModified != f.ModTime.Unix() || r.File.Target != f.Target {
			t.Errorf("row %s = %+v; device has %+v", r.FileID, r, f)
		}
		if r.FileID != backupfmt.FileID(r.Domain, r.RelativePath) {
			t.Errorf("row fileID %s is not sha1(%s-%s)", r.FileID, r.Domain, r.RelativePath)
		}
		if f.Flags != backupfmt.FlagFile {
			return nil
		}
		got, err := os.ReadFile(backupfmt.BlobPath(dir, r.FileID))
		if err != nil {
			t.Errorf("blob of %s %q: %v", r.Domain, r.RelativePath, err)
			return nil
		}
		if keys != nil {
			if len(r.File.EncryptionKey) != 44 {
				t.Errorf("row %s has a %d-byte EncryptionKey", r.FileID, len(r.File.EncryptionKey))
				return nil
			}
			var plain bytes.Buffer
			if _, err := keys.DecryptFile(&plain, bytes.NewReader(got), r.File.EncryptionKey); err != nil {
				t.Errorf("decrypt blob of %s %q: %v", r.Domain, r.RelativePath, err)
				return nil
			}
			got = plain.Bytes()
		} else if r.File.EncryptionKey != nil {
			t.Errorf("row %s of an unencrypted backup has an EncryptionKey", r.FileID)
		}
		rc, _ := d.Open(f)
		exp, _ := io.ReadAll(rc)
		if !bytes.Equal(got, exp) {
			t.Errorf("blob of %s %q differs from the device (%d vs %d bytes)", r.Domain, r.RelativePath, len(got), len(exp))
		}
		if r.File.Digest != nil && !systemDomains[r.Domain] {
			t.Errorf("Digest on non-system domain row %s %q", r.Domain, r.RelativePath)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Errorf("Manifest.db has %d of the device's %d entries", seen, len(want))
	}
	// No stray blobs: every file under xx/ is in the device's content.
	blobs := 0
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && len(e.Name()) == 40 {
			blobs++
			if f, ok := want[e.Name()]; !ok || f.Flags != backupfmt.FlagFile {
				t.Errorf("stray blob %s", p)
			}
		}
		return nil
	})
	regular := 0
	for _, f := range want {
		if f.Flags == backupfmt.FlagFile {
			regular++
		}
	}
	if blobs != regular {
		t.Errorf("folder has %d blobs; device has %d regular files", blobs, regular)
	}
}

// changedRegular counts regular files that are new or changed, and regular files removed,
// between two content listings.
func changedRegular(before, after []File) (changed, removed int) {
	old := map[string]File{}
	for _, f := range before {
		old[f.FileID] = f
	}
	cur := map[string]bool{}
	for _, f := range after {
		cur[f.FileID] = true
		if f.Flags != backupfmt.FlagFile {
			continue
		}
		o, ok := old[f.FileID]
		if !ok || o.Size != f.Size || !o.ModTime.Equal(f.ModTime) {
			changed++
		}
	}
	for _, f := range before {
		if f.Flags == backupfmt.FlagFile && !cur[f.FileID] {
			removed++
		}
	}
	return changed, removed
}

func TestFullThenIncremental(t *testing.T) {
	d := newTestDevice(t, Options{Seed: 7})
	h := newHost(t)

	res := h.session(t, d, nil, backupReq(false))
	if code := errorCode(t, res); code != 0 {
		t.Fatalf("full backup ErrorCode %d: %v", code, res)
	}
	c := d.Counters()
	files := d.Files()
	regular, dirs, links := 0, 0, 0
	var size int64
	for _, f := range files {
		switch f.Flags {
		case backupfmt.FlagFile:
			regular++
			size += f.Size
		case backupfmt.FlagDir:
			dirs++
		case backupfmt.FlagSymlink:
			links++
		}
	}
	if !c.LastFull || c.FullBackups != 1 || c.LastFilesUploaded != int64(regular) || c.LastBytesUploaded != size {
		t.Errorf("after full: %+v; want full, %d files, %d bytes", c, regular, size)
	}
	if dirs < 10 || links == 0 || regular+links != 300 {
		t.Errorf("content mix: %d regular, %d dirs, %d symlinks", regular, dirs, links)
	}
	verifyFolder(t, d, h.root)

	// Incremental after a mutation uploads exactly the new and changed files.
	before := d.Files()
	sum := d.Mutate(30)
	if sum.Added == 0 || sum.Modified == 0 || sum.Deleted == 0 {
		t.Fatalf("Mutate(30) = %+v; want adds, modifications and deletions", sum)
	}
	after := d.Files()
	changed, removed := changedRegular(before, after)
	res = h.session(t, d, nil, backupReq(false))
	if code := errorCode(t, res); code != 0 {
		t.Fatalf("incremental ErrorCode %d: %v", code, res)
	}
	c = d.Counters()
	if c.LastFull || c.IncrementalBackups != 1 || c.LastFilesUploaded != int64(changed) || c.LastFilesRemoved != int64(removed) {
		t.Errorf("after incremental: %+v; want incremental, %d uploaded, %d removed", c, changed, removed)
	}
	if h.seen("DLMessageDownloadFiles") != 3 { // Status.plist (×2 backups) + Manifest.plist/db
		t.Errorf("DownloadFiles requests = %d; want 3", h.seen("DLMessageDownloadFiles"))
	}
	verifyFolder(t, d, h.root)

	// Nothing changed: nothing uploaded.
	res = h.session(t, d, nil, backupReq(false))
	if c = d.Counters(); errorCode(t, res) != 0 || c.LastFull || c.LastFilesUploaded != 0 {
		t.Errorf("unchanged incremental: %v %+v; want 0 files uploaded", res, c)
	}
	verifyFolder(t, d, h.root)

	// ForceFullBackup uploads everything again.
	res = h.session(t, d, nil, backupReq(true))
	if c = d.Counters(); errorCode(t, res) != 0 || !c.LastFull || c.FullBackups != 2 {
		t.Errorf("forced full: %v %+v", res, c)
	}
	verifyFolder(t, d, h.root)
}

func TestUnknownUUIDMeansFull(t *testing.T) {
	h := newHost(t)
	d1 := newTestDevice(t, Options{Seed: 3, Files: 50})
	if res := h.session(t, d1, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	// Same content, but this device does not remember the folder's backup UUID.
	d2 := newTestDevice(t, Options{Seed: 3, Files: 50})
	if res := h.session(t, d2, nil, backupReq(false)); errorCode(t, res) != 0 || !d2.Counters().LastFull {
		t.Errorf("backup by a device with no memory: %v full=%v; want full", res, d2.Counters().LastFull)
	}
	// An unfinished Status.plist also forces full.
	st := backupfmt.Status{BackupState: "new", SnapshotState: "moving", UUID: d2.Counters().LastBackupUUID, Version: "3.3"}
	b, _ := st.Marshal()
	os.WriteFile(filepath.Join(h.root, testUDID, "Status.plist"), b, 0o644)
	if res := h.session(t, d2, nil, backupReq(false)); errorCode(t, res) != 0 || !d2.Counters().LastFull {
		t.Errorf("backup over unfinished Status.plist: %v full=%v; want full", res, d2.Counters().LastFull)
	}
	verifyFolder(t, d2, h.root)
}

func TestStateDirPersists(t *testing.T) {
	state := t.TempDir()
	h := newHost(t)
	d1 := newTestDevice(t, Options{Seed: 11, Files: 120, StateDir: state})
	if res := h.session(t, d1, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	d1.Mutate(20)
	want := d1.Files()

	d2 := newTestDevice(t, Options{Seed: 11, Files: 120, StateDir: state})
	if got := d2.Files(); !reflect.DeepEqual(got, want) {
		t.Fatalf("reloaded content differs: %d vs %d entries", len(got), len(want))
	}
	if c := d2.Counters(); c.Backups != 1 {
		t.Errorf("reloaded counters %+v; want 1 backup", c)
	}
	if res := h.session(t, d2, nil, backupReq(false)); errorCode(t, res) != 0 || d2.Counters().LastFull {
		t.Errorf("backup after restart: %v full=%v; want incremental (UUID remembered)", res, d2.Counters().LastFull)
	}
	verifyFolder(t, d2, h.root)

	// Other content parameters: the old state is not reused.
	d3 := newTestDevice(t, Options{Seed: 12, Files: 120, StateDir: state})
	if c := d3.Counters(); c.Backups != 0 {
		t.Errorf("state of another seed reused: %+v", c)
	}
}

func TestMutatePercentAfterBackup(t *testing.T) {
	d := newTestDevice(t, Options{Seed: 5, Files: 100, MutatePercent: 30})
	h := newHost(t)
	before := d.Files()
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	changed, _ := changedRegular(before, d.Files())
	if changed == 0 {
		t.Fatal("content did not change after a backup with MutatePercent")
	}
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 || d.Counters().LastFilesUploaded != int64(changed) {
		t.Errorf("second backup uploaded %d; want %d", d.Counters().LastFilesUploaded, changed)
	}
}

func TestPasscode(t *testing.T) {
	t.Run("entered", func(t *testing.T) {
		yes := true
		d := newTestDevice(t, Options{Files: 20, PasscodeRequired: &yes, PasscodeDelay: 80 * time.Millisecond})
		var r recorder
		start := time.Now()
		res := newHost(t).session(t, d, &r, backupReq(false))
		if errorCode(t, res) != 0 {
			t.Fatalf("backup with passcode: %v", res)
		}
		names, times := r.posted()
		if !reflect.DeepEqual(names, []string{NotifyPasscodePresented, NotifyPasscodeDismissed}) {
			t.Fatalf("posted %v; want presented, dismissed", names)
		}
		if gap := times[1].Sub(times[0]); gap < 80*time.Millisecond {
			t.Errorf("dismissed %v after presented; want ≥ PasscodeDelay", gap)
		}
		if time.Since(start) > 20*time.Second {
			t.Error("backup took too long")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		yes := true
		d := newTestDevice(t, Options{Files: 20, PasscodeRequired: &yes, PasscodeDelay: -1, PasscodeTimeout: 100 * time.Millisecond})
		var r recorder
		h := newHost(t)
		res := h.session(t, d, &r, backupReq(false))
		if code := errorCode(t, res); code != 208 || res["ErrorDescription"] != "Device locked (MBErrorDomain/208)" {
			t.Errorf("result %v; want 208 Device locked", res)
		}
		if names, _ := r.posted(); !reflect.DeepEqual(names, []string{NotifyPasscodePresented, NotifyPasscodeDismissed}) {
			t.Errorf("posted %v; want presented, dismissed", names)
		}
		if len(h.messages) != 1 { // only the final ProcessMessage: nothing was asked of the host
			t.Errorf("device sent %v before 208", h.messages)
		}
	})
	t.Run("default by version", func(t *testing.T) {
		for v, want := range map[string]bool{"16.1": true, "16.0.3": false, "17.5.1": true, "15.8": false} {
			d, _ := New(Options{Identity: Identity{UDID: testUDID, ProductVersion: v}})
			if got := d.passcodeRequired(); got != want {
				t.Errorf("passcodeRequired(%s) = %v; want %v", v, got, want)
			}
		}
	})
}

func TestInjectedErrors(t *testing.T) {
	t.Run("104", func(t *testing.T) {
		d := newTestDevice(t, Options{Files: 30, FailCode: 104})
		h := newHost(t)
		res := h.session(t, d, nil, backupReq(false))
		if code := errorCode(t, res); code != 104 {
			t.Fatalf("result %v; want 104", res)
		}
		if _, err := os.Stat(filepath.Join(h.root, testUDID, "Snapshot")); err != nil {
			t.Errorf("Snapshot should remain after 104: %v", err)
		}
		if st, err := backupfmt.ReadStatus(filepath.Join(h.root, testUDID, "Status.plist")); err != nil || st.SnapshotState == "finished" {
			t.Errorf("Status.plist after 104 = %+v, %v; want not finished", st, err)
		}
		if c := d.Counters(); c.FailedBackups != 1 || c.LastErrorCode != 104 {
			t.Errorf("counters %+v", c)
		}
	})
	t.Run("104 from host", func(t *testing.T) {
		d := newTestDevice(t, Options{Files: 30})
		h := newHost(t)
		h.failRemove = true
		if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 104 {
			t.Errorf("result %v; want 104 when the host cannot remove Snapshot", res)
		}
	})
	t.Run("105 purge unanswered", func(t *testing.T) {
		d := newTestDevice(t, Options{Files: 30, FailCode: 105, PurgeTimeout: 150 * time.Millisecond})
		h := newHost(t)
		start := time.Now()
		res := h.session(t, d, nil, backupReq(false))
		if code := errorCode(t, res); code != 105 || !strings.Contains(res["ErrorDescription"].(string), "Insufficient free disk space") {
			t.Errorf("result %v; want 105", res)
		}
		if h.seen("DLMessagePurgeDiskSpace") != 1 || time.Since(start) < 150*time.Millisecond {
			t.Errorf("PurgeDiskSpace sent %d times, waited %v", h.seen("DLMessagePurgeDiskSpace"), time.Since(start))
		}
	})
	t.Run("105 real shortfall", func(t *testing.T) {
		d := newTestDevice(t, Options{Files: 30, PurgeTimeout: time.Second})
		h := newHost(t)
		h.free, h.answerPurge = 1000, true
		res := h.session(t, d, nil, backupReq(false))
		if errorCode(t, res) != 105 || h.seen("DLMessageGetFreeDiskSpace") != 1 || h.seen("DLMessagePurgeDiskSpace") != 1 {
			t.Errorf("result %v after %v; want 105 after a failed purge", res, h.messages)
		}
		// Enough space with RequiredFreeSpace lowered.
		d = newTestDevice(t, Options{Files: 30, RequiredFreeSpace: 500})
		if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
			t.Errorf("result %v; want success when the requirement fits", res)
		}
	})
	t.Run("212", func(t *testing.T) {
		d := newTestDevice(t, Options{Files: 30, FailCode: 212})
		h := newHost(t)
		res := h.session(t, d, nil, backupReq(false))
		if errorCode(t, res) != 212 || res["ErrorDescription"] != "Unable to backup until Setup is finished" || len(h.messages) != 1 {
			t.Errorf("result %v after %v; want 212 at once", res, h.messages)
		}
	})
	t.Run("205 empty Manifest.plist", func(t *testing.T) {
		d := newTestDevice(t, Options{Files: 30})
		h := newHost(t)
		if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
			t.Fatal(res)
		}
		os.WriteFile(filepath.Join(h.root, testUDID, "Manifest.plist"), nil, 0o644)
		if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 205 {
			t.Errorf("result %v; want 205", res)
		}
	})
	t.Run("208 refused", func(t *testing.T) {
		d := newTestDevice(t, Options{Files: 30, FailCode: 208})
		var r recorder
		if res := newHost(t).session(t, d, &r, backupReq(false)); errorCode(t, res) != 208 {
			t.Errorf("result %v; want 208", res)
		}
		if names, _ := r.posted(); len(names) != 2 {
			t.Errorf("posted %v", names)
		}
	})
}

func TestHelloInfoListUnknown(t *testing.T) {
	d := newTestDevice(t, Options{Files: 40})
	h := newHost(t)
	h.versions = []any{1.0, 3.0}
	if res := h.session(t, d, nil, nil); errorCode(t, res) != 1 {
		t.Errorf("Hello without 2.x: %v; want ErrorCode 1", res)
	}
	h.versions = []any{2.0}
	if res := h.session(t, d, nil, nil); errorCode(t, res) != 0 || res["ProtocolVersion"] != 2.0 {
		t.Errorf("Hello [2.0]: %v", res)
	}
	h.versions = nil
	if res := h.session(t, d, nil, nil); res["ProtocolVersion"] != 2.1 {
		t.Errorf("Hello [2.0 2.1]: %v; want 2.1", res)
	}
	res := h.session(t, d, nil, map[string]any{"MessageName": "Info", "TargetIdentifier": testUDID})
	if content, _ := res["Content"].(string); errorCode(t, res) != 0 || !strings.Contains(content, "Files: 40") || !strings.Contains(content, testUDID) {
		t.Errorf("Info: %v", res)
	}
	res = h.session(t, d, nil, map[string]any{"MessageName": "List", "TargetIdentifier": testUDID})
	content, _ := res["Content"].(string)
	if lines := strings.Count(content, "\n"); errorCode(t, res) != 0 || lines != len(d.Files())+1 {
		t.Errorf("List: %d lines; want %d", lines, len(d.Files())+1)
	}
	res = h.session(t, d, nil, map[string]any{"MessageName": "Restore", "TargetIdentifier": testUDID})
	if errorCode(t, res) == 0 || res["ErrorDescription"] == nil {
		t.Errorf("unsupported request: %v; want an error", res)
	}
}

func TestHostile(t *testing.T) {
	d := newTestDevice(t, Options{Files: 300, Hostile: true})
	parent := t.TempDir()
	h := &testHost{root: filepath.Join(parent, "root"), udid: testUDID}
	os.Mkdir(h.root, 0o755)
	os.WriteFile(filepath.Join(parent, "snapback-hostile-dotdot"), []byte("victim"), 0o644)
	res := h.session(t, d, nil, backupReq(false))
	if errorCode(t, res) != 0 {
		t.Fatalf("hostile backup: %v", res)
	}
	c := d.Counters()
	if c.HostileAttempts != 42 || c.HostileRefused != c.HostileAttempts || h.refused < 42 {
		t.Errorf("hostile attempts %d, refused %d (host counted %d); want all 42 refused", c.HostileAttempts, c.HostileRefused, h.refused)
	}
	for _, m := range []string{"DLMessageCreateDirectory", "DLContentsOfDirectory", "DLMessageCopyItem", "DLMessageMoveItems", "DLMessageRemoveItems", "DLMessageUploadFiles", "DLMessageDownloadFiles"} {
		if h.seen(m) == 0 {
			t.Errorf("hostile device never sent %s", m)
		}
	}
	if b, err := os.ReadFile(filepath.Join(parent, "snapback-hostile-dotdot")); err != nil || string(b) != "victim" {
		t.Errorf("file outside the root changed: %q %v", b, err)
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 2 {
		t.Errorf("entries next to the root: %v", ents)
	}
	// Manifest.db carries escaping rows and symlink targets.
	db, err := backupfmt.OpenManifestDB(filepath.Join(h.root, testUDID, "Manifest.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var escRows, escLinks int
	db.Each(context.Background(), func(r backupfmt.Record) error {
		if strings.Contains(r.RelativePath, "..") || strings.HasPrefix(r.RelativePath, "/") || strings.ContainsAny(r.RelativePath, "\\\x00") {
			escRows++
		}
		if r.File.Target == hostileTarget {
			escLinks++
		}
		return nil
	})
	if escRows != 4 || escLinks == 0 {
		t.Errorf("Manifest.db: %d escaping rows, %d escaping symlinks; want 4 and some", escRows, escLinks)
	}
}

func TestContentDeterministic(t *testing.T) {
	a := newTestDevice(t, Options{Seed: 42, Files: 500, TotalSize: 50 << 20})
	b := newTestDevice(t, Options{Seed: 42, Files: 500, TotalSize: 50 << 20})
	fa, fb := a.Files(), b.Files()
	if !reflect.DeepEqual(fa, fb) {
		t.Fatal("same seed, different content")
	}
	var total int64
	kinds := map[string]int{}
	for _, f := range fa {
		total += f.Size
		switch {
		case strings.HasSuffix(f.RelativePath, ".MOV"):
			kinds["video"]++
		case strings.HasSuffix(f.RelativePath, ".HEIC"):
			kinds["photo"]++
		}
		if f.Flags == backupfmt.FlagDir {
			continue
		}
		i, ok := itemIndex(42, f.Domain, f.RelativePath)
		if !ok || i != f.index {
			t.Errorf("itemIndex(%s, %q) = %d, %v; want %d", f.Domain, f.RelativePath, i, ok, f.index)
		}
	}
	if total < 49<<20 || total > 51<<20 {
		t.Errorf("total size %d; want about %d", total, 50<<20)
	}
	if kinds["photo"] < 20 || kinds["video"] == 0 {
		t.Errorf("kinds %v; want photos and videos", kinds)
	}
	if _, ok := itemIndex(42, "HomeDomain", "Library/Preferences/evil_0000007.plist"); ok {
		t.Error("itemIndex accepted a path the generator did not produce")
	}
	// Bytes are independent of read sizes and differ between versions and seeds.
	f := fa[len(fa)-1]
	for _, g := range fa {
		if g.Flags == backupfmt.FlagFile && g.Size > 100_000 {
			f = g
			break
		}
	}
	whole, _ := io.ReadAll(a.content(f.index, f.version, f.Size))
	var pieces bytes.Buffer
	r := a.content(f.index, f.version, f.Size)
	buf := make([]byte, 7777)
	for n := 1; ; n = n%13 + 1 {
		k, err := r.Read(buf[:n*511%len(buf)+1])
		pieces.Write(buf[:k])
		if err == io.EOF {
			break
		}
	}
	if int64(len(whole)) != f.Size || !bytes.Equal(whole, pieces.Bytes()) {
		t.Errorf("content depends on read sizes (%d vs %d bytes)", len(whole), pieces.Len())
	}
	v2, _ := io.ReadAll(a.content(f.index, f.version+1, f.Size))
	if bytes.Equal(whole[:1000], v2[:1000]) {
		t.Error("a new version has the same bytes")
	}
}

func TestMutateDeterministic(t *testing.T) {
	a := newTestDevice(t, Options{Seed: 9, Files: 1000})
	b := newTestDevice(t, Options{Seed: 9, Files: 1000})
	sa, sb := a.Mutate(10), b.Mutate(10)
	if sa != sb || !reflect.DeepEqual(a.Files(), b.Files()) {
		t.Errorf("Mutate not deterministic: %+v vs %+v", sa, sb)
	}
	if sa.Added < 25 || sa.Added > 40 || sa.Modified < 15 || sa.Deleted < 15 || sa.Files != 1000+sa.Added-sa.Deleted {
		t.Errorf("Mutate(10) on 1000 files = %+v", sa)
	}
}

// A device that remembers its last backup must still believe the host's Manifest.db over
// its memory when the host changed it: here the host dropped one file (row and blob), as a
// host repairing a damaged backup would, and the next incremental must send it again.
func TestIncrementalAfterHostChangedManifest(t *testing.T) {
	d := newTestDevice(t, Options{Seed: 8, Files: 200})
	h := newHost(t)
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	var lost File
	for _, f := range d.Files() {
		if f.Flags == backupfmt.FlagFile && f.Size > 0 {
			lost = f
			break
		}
	}
	dir := filepath.Join(h.root, testUDID)
	db, err := sql.Open("sqlite", filepath.Join(dir, backupfmt.ManifestDBName))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := db.Exec(`DELETE FROM Files WHERE fileID = ?`, lost.FileID); err != nil {
		t.Fatal(err)
	} else if n, _ := r.RowsAffected(); n != 1 {
		t.Fatalf("deleted %d rows of %s", n, lost.FileID)
	}
	db.Close()
	if err := os.Remove(backupfmt.BlobPath(dir, lost.FileID)); err != nil {
		t.Fatal(err)
	}

	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	if c := d.Counters(); c.LastFull || c.LastFilesUploaded != 1 {
		t.Errorf("incremental after the host dropped %s: full=%v, %d files uploaded; want an incremental of that one file",
			lost.RelativePath, c.LastFull, c.LastFilesUploaded)
	}
	verifyFolder(t, d, h.root)

	// The host now holds exactly what the device sent: nothing to upload.
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 {
		t.Fatal(res)
	}
	if c := d.Counters(); c.LastFull || c.LastFilesUploaded != 0 {
		t.Errorf("unchanged incremental: full=%v, %d files uploaded; want 0", c.LastFull, c.LastFilesUploaded)
	}
	verifyFolder(t, d, h.root)
}
