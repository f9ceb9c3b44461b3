package app

import (
	"context"
	"errors"
	"path/filepath"
	"snapback/settings/settingstest"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/devicesim/simtest"
	"snapback/internal/engine"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
	"snapback/settings"
)

// startDevice serves one simulated iPhone (iOS 17, passcode typed after 30 ms) on a real
// usbmuxd socket.
func startDevice(t *testing.T) (*backupsim.Device, string) {
	t.Helper()
	_, agent := simtest.AddDevice(t, simtest.Start(t), devicesim.DeviceConfig{}, backupsim.Options{
		Files: 30, TotalSize: 1 << 20, KDFRounds: 1000, PasscodeDelay: 30 * time.Millisecond,
	})
	return agent, devicesim.DefaultIdentity(0).UDID
}

// The `encryption` setting before a backup: keep does nothing; on without a stored password
// is a PasswordNeededError naming `snapback password set`; on with one turns encryption on
// (passcode prompt reported) so that the next backup is encrypted with it; a second call is
// a no-op; off turns it off again with the stored password.
func TestEnsureEncryption(t *testing.T) {
	agent, udid := startDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	secrets := &settingstest.Secrets{}

	if err := EnsureEncryption(ctx, nil, udid, settings.EncryptionKeep, secrets, nil); err != nil || agent.WillEncrypt() {
		t.Fatalf("keep: %v, encrypting %v", err, agent.WillEncrypt())
	}
	err := EnsureEncryption(ctx, nil, udid, settings.EncryptionOn, secrets, nil)
	if !errors.Is(err, failure.PasswordNeeded) || !errors.Is(err, settings.ErrSecretNotFound) || !strings.Contains(failure.Text(err), "snapback password set --udid "+udid) {
		t.Fatalf("on without a stored password: %v", err)
	}

	const pw = "stored-Pw-for-ensure-1c9d"
	secrets.Set(ctx, udid, pw)
	var mu sync.Mutex
	var kinds []mobilebackup2.EventKind
	events := func(ev mobilebackup2.Event) { mu.Lock(); kinds = append(kinds, ev.Kind); mu.Unlock() }
	if err := EnsureEncryption(ctx, nil, udid, settings.EncryptionOn, secrets, events); err != nil {
		t.Fatalf("on: %v", err)
	}
	mu.Lock()
	sawPasscode := false
	for _, k := range kinds {
		sawPasscode = sawPasscode || k == mobilebackup2.EventPasscodeRequested
	}
	mu.Unlock()
	if !agent.WillEncrypt() || !sawPasscode {
		t.Fatalf("after on: encrypting %v, passcode event %v", agent.WillEncrypt(), sawPasscode)
	}
	before := agent.Counters().PasswordChanges
	if err := EnsureEncryption(ctx, nil, udid, settings.EncryptionOn, secrets, nil); err != nil || agent.Counters().PasswordChanges != before {
		t.Errorf("on while on: %v; changes %d → %d", err, before, agent.Counters().PasswordChanges)
	}

	root := t.TempDir()
	if _, err := engine.Backup(ctx, engine.Request{UDID: udid, Root: root, LockRetry: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	m, err := backupfmt.ReadManifest(filepath.Join(root, udid, "Manifest.plist"))
	if err != nil || !m.IsEncrypted {
		t.Fatalf("backup after EnsureEncryption(on): encrypted %v, %v", m.IsEncrypted, err)
	}

	secrets.Set(ctx, udid, "not-the-password")
	if err := EnsureEncryption(ctx, nil, udid, settings.EncryptionOff, secrets, nil); !errors.Is(err, failure.WrongPassword) {
		t.Errorf("off with a wrong stored password: %v; want ErrWrongPassword", err)
	}
	secrets.Set(ctx, udid, pw)
	if err := EnsureEncryption(ctx, nil, udid, settings.EncryptionOff, secrets, nil); err != nil || agent.WillEncrypt() {
		t.Errorf("off: %v, encrypting %v", err, agent.WillEncrypt())
	}
}
