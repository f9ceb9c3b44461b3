package devicesim_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
)

// These tests put Snapback's own host (internal/mobilebackup2) in front of the simulated
// device's backup agent over an in-memory link: the same exchange idevicebackup2 has in
// e2e_idevicebackup2_test.go, minus usbmuxd/lockdownd/TLS, so they need no external tool.

func newAgent(t *testing.T, o backupsim.Options) *backupsim.Device {
	t.Helper()
	id := devicesim.DefaultIdentity(0)
	o.Identity = backupsim.Identity{UDID: id.UDID, DeviceName: id.DeviceName, ProductType: id.ProductType,
		ProductVersion: id.ProductVersion, BuildVersion: id.BuildVersion, SerialNumber: id.SerialNumber}
	if o.TempDir == "" {
		o.TempDir = t.TempDir()
	}
	if o.PasscodeRequired == nil {
		o.PasscodeRequired = new(bool)
	}
	a, err := backupsim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// hostBackup runs one Snapback host session (handshake, Backup, Disconnect) against agent.
func hostBackup(t *testing.T, agent *backupsim.Device, root string, force bool) (mobilebackup2.Result, error) {
	t.Helper()
	hostEnd, devEnd := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- agent.Serve(ctx, devEnd, nil) }()
	defer func() {
		hostEnd.Close()
		<-served
	}()
	c := mobilebackup2.NewClient(hostEnd, nil)
	if err := c.Handshake(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	res, err := c.Backup(ctx, mobilebackup2.BackupOptions{Root: root, UDID: agent.UDID(), ForceFullBackup: force})
	if err == nil {
		c.Disconnect()
	}
	return res, err
}

func TestSnapbackHostFullThenIncremental(t *testing.T) {
	agent := newAgent(t, backupsim.Options{Seed: 21, Files: 400, TotalSize: 8 << 20})
	root := t.TempDir()
	dir := filepath.Join(root, agent.UDID())

	res, err := hostBackup(t, agent, root, false)
	if err != nil {
		t.Fatalf("full backup: %v", err)
	}
	c := agent.Counters()
	if !res.FullBackup || !c.LastFull || res.SnapshotState != "finished" || res.BackupUUID != c.LastBackupUUID {
		t.Errorf("full: result %+v, device %+v", res, c)
	}
	verifyFolder(t, agent, dir, false)

	before := agent.Files()
	agent.Mutate(20)
	changed, removed := changedRegular(before, agent.Files())
	res, err = hostBackup(t, agent, root, false)
	if err != nil {
		t.Fatalf("incremental backup: %v", err)
	}
	c = agent.Counters()
	if res.FullBackup || c.LastFull || c.LastFilesUploaded != int64(changed) || c.LastFilesRemoved != int64(removed) {
		t.Errorf("incremental: result %+v, device %+v; want %d uploaded, %d removed", res, c, changed, removed)
	}
	verifyFolder(t, agent, dir, false)
}

func TestSnapbackHostDeviceErrors(t *testing.T) {
	yes := true
	tests := []struct {
		name     string
		opts     backupsim.Options
		sentinel error
		code     int64
	}{
		{"208 passcode timeout", backupsim.Options{PasscodeRequired: &yes, PasscodeDelay: -1, PasscodeTimeout: 100 * time.Millisecond}, failure.DeviceLocked, 208},
		{"105", backupsim.Options{FailCode: 105, PurgeTimeout: 10 * time.Second}, failure.NoSpace, 105},
		{"104", backupsim.Options{FailCode: 104}, failure.DeviceStopped, 104},
		{"212", backupsim.Options{FailCode: 212}, failure.SetupNotFinished, 212},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Files = 30
			agent := newAgent(t, tt.opts)
			start := time.Now()
			_, err := hostBackup(t, agent, t.TempDir(), false)
			var e *failure.Error
			if !errors.Is(err, tt.sentinel) || !errors.As(err, &e) || e.DeviceCode != tt.code {
				t.Errorf("error = %v; want %v with device code %d", err, tt.sentinel, tt.code)
			}
			// Snapback's host answers PurgeDiskSpace, so the device need not wait out its timeout.
			if tt.code == 105 && time.Since(start) > 5*time.Second {
				t.Errorf("105 took %v: the host's PurgeDiskSpace answer was not seen", time.Since(start))
			}
		})
	}
}

// A hostile device must not get anything written or read outside the backup root.
func TestSnapbackHostHostileDevice(t *testing.T) {
	agent := newAgent(t, backupsim.Options{Seed: 5, Files: 300, Hostile: true})
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(parent, "snapback-hostile-dotdot")
	os.WriteFile(victim, []byte("victim"), 0o644)
	_, err := hostBackup(t, agent, root, false)
	c := agent.Counters()
	t.Logf("host result: %v; device saw %d of %d hostile attempts refused", err, c.HostileRefused, c.HostileAttempts)
	if err == nil && c.HostileRefused != c.HostileAttempts {
		t.Errorf("the host accepted %d hostile paths", c.HostileAttempts-c.HostileRefused)
	}
	if b, rerr := os.ReadFile(victim); rerr != nil || string(b) != "victim" {
		t.Errorf("file outside the root changed: %q %v", b, rerr)
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 2 {
		t.Errorf("entries next to the root: %v; want root and the victim only", ents)
	}
	if _, serr := os.Stat("/tmp/snapback-hostile-absolute"); serr == nil {
		t.Error("an absolute device path was created")
	}
}
