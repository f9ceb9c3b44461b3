package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"snapback/internal/testenv"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
)

// syncBuffer is the shared goroutine-safe log sink.
type syncBuffer = testenv.Buffer

// setEncryption runs SetEncryption against the rig with a debug logger into logs.
func (r *rig) setEncryption(t *testing.T, logs io.Writer, ev *events, old, new []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := EncryptionRequest{UDID: r.udid, Old: old, New: new, LockRetry: 10 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if ev != nil {
		req.Events = ev.add
	}
	return SetEncryption(ctx, req)
}

func (r *rig) status(t *testing.T) bool {
	t.Helper()
	on, err := EncryptionStatus(context.Background(), nil, r.udid)
	if err != nil {
		t.Fatalf("EncryptionStatus: %v", err)
	}
	return on
}

// loggedBackup is rig.backup with a debug logger into logs.
func (r *rig) loggedBackup(t *testing.T, logs io.Writer, root string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := Backup(ctx, Request{UDID: r.udid, Root: root, LockRetry: 10 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
}

// checkEncryptedFolder proves root/<UDID> is an encrypted backup (Manifest.plist
// IsEncrypted, Manifest.db not SQLite) that backupcrypto opens with password and whose
// every file decrypts to exactly the device's bytes; a wrong password is refused.
func checkEncryptedFolder(t *testing.T, r *rig, root string, password []byte) {
	t.Helper()
	dir := filepath.Join(root, r.udid)
	m, err := backupfmt.ReadManifest(filepath.Join(dir, "Manifest.plist"))
	if err != nil || !m.IsEncrypted {
		t.Fatalf("Manifest.plist: IsEncrypted %v, %v", m.IsEncrypted, err)
	}
	dbPath := filepath.Join(dir, "Manifest.db")
	if sq, err := backupcrypto.IsSQLite(dbPath); err != nil || sq {
		t.Fatalf("Manifest.db is plain SQLite (%v, %v)", sq, err)
	}
	if _, err := backupcrypto.Unlock(m.BackupKeyBag, []byte("not the password")); !errors.Is(err, backupcrypto.ErrWrongPassword) {
		t.Errorf("a wrong password: %v; want ErrWrongPassword", err)
	}
	keys, err := backupcrypto.Unlock(m.BackupKeyBag, password)
	if err != nil {
		t.Fatalf("unlock with the password: %v", err)
	}
	plain := filepath.Join(t.TempDir(), "Manifest.db")
	if err := keys.DecryptManifestDB(m.ManifestKey, dbPath, plain); err != nil {
		t.Fatalf("decrypt Manifest.db: %v", err)
	}
	db, err := backupfmt.OpenManifestDB(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := map[string]backupfmt.Record{}
	if err := db.Each(context.Background(), func(rec backupfmt.Record) error { rows[rec.FileID] = rec; return nil }); err != nil {
		t.Fatal(err)
	}
	files := r.agent.Files()
	if len(rows) != len(files) {
		t.Errorf("Manifest.db has %d rows; device has %d files", len(rows), len(files))
	}
	compared := 0
	for _, f := range files {
		rec, ok := rows[f.FileID]
		if !ok || rec.Domain != f.Domain || rec.RelativePath != f.RelativePath || rec.Flags != f.Flags {
			t.Errorf("row for %s-%s: %+v (present %v)", f.Domain, f.RelativePath, rec, ok)
			continue
		}
		if f.Flags != backupfmt.FlagFile {
			continue
		}
		blob, err := os.Open(backupfmt.BlobPath(dir, f.FileID))
		if err != nil {
			t.Errorf("blob of %s: %v", f.RelativePath, err)
			continue
		}
		var got bytes.Buffer
		_, err = keys.DecryptFile(&got, blob, rec.File.EncryptionKey)
		blob.Close()
		if err != nil {
			t.Errorf("decrypt %s: %v", f.RelativePath, err)
			continue
		}
		want, err := r.agent.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		wantBytes, _ := io.ReadAll(want)
		want.Close()
		if !bytes.Equal(got.Bytes(), wantBytes) {
			t.Errorf("%s-%s decrypts to %d bytes that differ from the device's %d", f.Domain, f.RelativePath, got.Len(), len(wantBytes))
		}
		compared++
	}
	if compared == 0 {
		t.Error("no file compared")
	}
}

// assertNoSecret fails if a password appears in any file under dir or in the log text.
func assertNoSecret(t *testing.T, dir, logs string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains([]byte(logs), s) {
			t.Errorf("the log contains a password")
		}
	}
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("%s contains a password", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The whole life of backup encryption against the simulator over the real socket: off →
// on (passcode prompt seen, next backup encrypted and decryptable to the device's files) →
// wrong old password refused with 207 → changed (new password works, old does not) → off
// (next backup plain). No password reaches a file or the log.
func TestEncryptionLifecycle(t *testing.T) {
	yes := true
	r := newRig(t, backupsim.Options{Seed: 11, Files: 60, KDFRounds: 1000, PasscodeRequired: &yes, PasscodeDelay: 100 * time.Millisecond},
		devicesim.DeviceConfig{Identity: withVersion("16.1")})
	logs := &syncBuffer{}
	first, second := []byte("correct horse battery staple"), []byte("tr0ub4dor&3 second secret")
	root := t.TempDir()

	if r.status(t) {
		t.Fatal("status: on before anything was changed")
	}
	if err := r.setEncryption(t, logs, nil, first, nil); !errors.Is(err, ErrEncryptionAlreadyOff) {
		t.Errorf("off while off: %v; want ErrEncryptionAlreadyOff", err)
	}

	var ev events
	if err := r.setEncryption(t, logs, &ev, nil, first); err != nil {
		t.Fatalf("turn on: %v", err)
	}
	evs := ev.all()
	requested := false
	for _, e := range evs {
		requested = requested || e.Kind == mobilebackup2.EventPasscodeRequested
	}
	if !requested || evs[len(evs)-1].Kind != mobilebackup2.EventFinished {
		t.Errorf("events of turning on: passcode requested %v, last %v; want requested and finished", requested, evs[len(evs)-1].Kind)
	}
	if !r.status(t) {
		t.Fatal("status: off after turning on")
	}
	if err := r.setEncryption(t, logs, nil, nil, first); !errors.Is(err, ErrEncryptionAlreadyOn) {
		t.Errorf("on while on: %v; want ErrEncryptionAlreadyOn", err)
	}
	r.loggedBackup(t, logs, root)
	checkEncryptedFolder(t, r, root, first)

	err := r.setEncryption(t, logs, nil, []byte("a wrong password"), second)
	var e *failure.Error
	if !errors.Is(err, failure.WrongPassword) || !errors.As(err, &e) || e.DeviceCode != 207 {
		t.Fatalf("change with a wrong old password: %v; want ErrWrongPassword (207)", err)
	}
	if err := r.setEncryption(t, logs, nil, first, second); err != nil {
		t.Fatalf("change: %v", err)
	}
	r.agent.Mutate(20)
	r.loggedBackup(t, logs, root)
	checkEncryptedFolder(t, r, root, second)
	m, _ := backupfmt.ReadManifest(filepath.Join(root, r.udid, "Manifest.plist"))
	if _, err := backupcrypto.Unlock(m.BackupKeyBag, first); !errors.Is(err, backupcrypto.ErrWrongPassword) {
		t.Errorf("the old password still unlocks the new backup: %v", err)
	}
	if err := r.setEncryption(t, logs, nil, first, nil); !errors.Is(err, failure.WrongPassword) {
		t.Errorf("turn off with the old password: %v; want ErrWrongPassword", err)
	}

	if err := r.setEncryption(t, logs, nil, second, nil); err != nil {
		t.Fatalf("turn off: %v", err)
	}
	if r.status(t) {
		t.Fatal("status: on after turning off")
	}
	r.loggedBackup(t, logs, root)
	if m, _ := backupfmt.ReadManifest(filepath.Join(root, r.udid, "Manifest.plist")); m.IsEncrypted {
		t.Error("backup after turning off is encrypted")
	}
	checkFolder(t, r, root)

	if !strings.Contains(logs.String(), "changing backup encryption") {
		t.Error("the debug log is empty: the secret check would prove nothing")
	}
	assertNoSecret(t, root, logs.String(), first, second)
}

// With the real KDF parameters (10,000,000 PBKDF2-SHA256 rounds) a backup made by Snapback
// after turning encryption on decrypts with backupcrypto. This costs a few seconds.
func TestEncryptionRealKDF(t *testing.T) {
	if testing.Short() {
		t.Skip("real KDF: seconds of PBKDF2")
	}
	r := newRig(t, backupsim.Options{Seed: 12, Files: 25, TotalSize: 1 << 20}, devicesim.DeviceConfig{})
	pw := []byte("a real-world backup password")
	logs := &syncBuffer{}
	if err := r.setEncryption(t, logs, nil, nil, pw); err != nil {
		t.Fatalf("turn on: %v", err)
	}
	root := t.TempDir()
	r.loggedBackup(t, logs, root)
	m, err := backupfmt.ReadManifest(filepath.Join(root, r.udid, "Manifest.plist"))
	if err != nil {
		t.Fatal(err)
	}
	bag, err := backupcrypto.ParseKeyBag(m.BackupKeyBag)
	if err != nil || bag.DPIC != 10_000_000 || bag.Iter != 10_000 {
		t.Fatalf("keybag: %+v, %v; want DPIC 10,000,000 and ITER 10,000", bag, err)
	}
	checkEncryptedFolder(t, r, root, pw)
	assertNoSecret(t, root, logs.String(), pw)
}

// Debian's idevicebackup2 (a client that knows nothing of Snapback) turns the simulated
// device's encryption on and changes its password with the same ChangePassword request;
// Snapback then sees the change and backs up with the password idevicebackup2 set.
func TestEncryptionByIdevicebackup2(t *testing.T) {
	bin := idevicebackup2(t)
	r := newRig(t, backupsim.Options{Seed: 13, Files: 30, KDFRounds: 1000, PasscodeDelay: 20 * time.Millisecond}, devicesim.DeviceConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The passwords are test fixtures: idevicebackup2 1.3.0 takes them only as arguments.
	tool := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, bin, append([]string{"-u", r.udid}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("idevicebackup2 %s: %v\n%s", args[0], err, out)
		}
		return string(out)
	}
	if out := tool("encryption", "on", "idb-first", t.TempDir()); !strings.Contains(out, "enabled successfully") {
		t.Errorf("idevicebackup2 encryption on said:\n%s", out)
	}
	if !r.status(t) {
		t.Fatal("status off after idevicebackup2 encryption on")
	}
	if out := tool("changepw", "idb-first", "idb-second", t.TempDir()); !strings.Contains(out, "changed successfully") {
		t.Errorf("idevicebackup2 changepw said:\n%s", out)
	}
	root := t.TempDir()
	logs := &syncBuffer{}
	r.loggedBackup(t, logs, root)
	checkEncryptedFolder(t, r, root, []byte("idb-second"))
	if c := r.agent.Counters(); c.PasswordChanges != 2 {
		t.Errorf("device counted %d password changes; want 2", c.PasswordChanges)
	}
}

// A passcode never entered on the device ends SetEncryption with ErrDeviceLocked (208),
// after the passcode-requested event, and leaves the device's encryption as it was.
func TestEncryptionPasscodeTimeout(t *testing.T) {
	r := newRig(t, backupsim.Options{Files: 10, KDFRounds: 1000, PasscodeDelay: -1, PasscodeTimeout: 200 * time.Millisecond},
		devicesim.DeviceConfig{Identity: withVersion("16.1")})
	var ev events
	err := r.setEncryption(t, io.Discard, &ev, nil, []byte("never applied"))
	var e *failure.Error
	if !errors.Is(err, failure.DeviceLocked) || !errors.As(err, &e) || e.DeviceCode != 208 {
		t.Fatalf("err = %v; want ErrDeviceLocked (208)", err)
	}
	evs := ev.all()
	requested := false
	for _, x := range evs {
		requested = requested || x.Kind == mobilebackup2.EventPasscodeRequested
	}
	if !requested || evs[len(evs)-1].Kind != mobilebackup2.EventFailed {
		t.Errorf("events: passcode requested %v, last %v", requested, evs[len(evs)-1].Kind)
	}
	if r.status(t) {
		t.Error("encryption turned on although the passcode was never entered")
	}
}
