//go:build linux

package engine

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
	"snapback/internal/testenv"
)

// Three files fail mid-upload with an error block: the backup succeeds, the three are
// reported with path, domain and reason, and no partial blob is left for them.
func TestFileErrorsReportedBackupCommits(t *testing.T) {
	r := newRig(t, backupsim.Options{Quirks: backupsim.Quirks{FileErrors: 3}}, devicesim.DeviceConfig{})
	root := t.TempDir()
	res, err := r.backup(t, root, false, nil)
	if err != nil {
		t.Fatalf("backup with 3 unreadable files failed: %v", err)
	}
	if got := len(res.Backup.Unreadable); got != 3 {
		t.Fatalf("Unreadable = %+v; want 3 files", res.Backup.Unreadable)
	}
	for _, u := range res.Backup.Unreadable {
		if u.Domain == "" || u.RelativePath == "" || u.Reason != "Input/output error (5)" || u.DevicePath == "" {
			t.Errorf("unreadable file not fully described: %+v", u)
		}
		if backupfmt.FileID(u.Domain, u.RelativePath) != u.FileID {
			t.Errorf("domain/path %s/%s do not match file ID %s", u.Domain, u.RelativePath, u.FileID)
		}
		if _, err := os.Lstat(filepath.Join(root, u.HostPath)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a partial blob of the unreadable file is left at %s (%v)", u.HostPath, err)
		}
	}
	if c := r.agent.Counters(); c.LastFileErrors != 3 || c.Backups != 1 {
		t.Errorf("device counters %+v; want one backup with 3 file errors", c)
	}
}

// The device locks mid-upload and ends with 104: "the device stopped", not a host problem.
func TestLockAfterIsDeviceStopped(t *testing.T) {
	r := newRig(t, backupsim.Options{Quirks: backupsim.Quirks{LockAfter: 1 << 20}}, devicesim.DeviceConfig{})
	_, err := r.backup(t, t.TempDir(), false, nil)
	fe, ok := failure.As(err)
	if !ok || fe.Class != failure.DeviceStopped || fe.DeviceCode != 104 || !fe.Retryable() {
		t.Fatalf("backup with the device locking = %v; want retryable DeviceStopped (104)", err)
	}
}

// The host's own disk fills during the upload; the device then ends with an error code,
// and the failure is the host's ("no space"), not "the device stopped".
func TestHostWriteErrorWinsOverDeviceCode(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	// The device's own estimate is honest and tiny, so it starts; the disk fills on the way.
	r := newRig(t, backupsim.Options{RequiredFreeSpace: 1}, devicesim.DeviceConfig{})
	_, err := r.backup(t, mnt, false, nil)
	if !errors.Is(err, failure.NoSpace) {
		t.Fatalf("backup onto a full disk = %v; want NoSpace", err)
	}
}

// An absurd free-space demand (11 TB, more than the 128 GB device holds) is answered so the
// backup goes on: the data fits.
func TestInflatedPurgeDemandDoesNotRefuse(t *testing.T) {
	r := newRig(t, backupsim.Options{Quirks: backupsim.Quirks{PurgeDemand: 11 << 40}}, devicesim.DeviceConfig{})
	res, err := r.backup(t, t.TempDir(), false, nil)
	if err != nil {
		t.Fatalf("backup with an inflated demand: %v", err)
	}
	if res.Backup.PurgeRequests != 1 || res.Backup.PurgeGranted != 1 {
		t.Errorf("purge requests %d granted %d; want 1 and 1", res.Backup.PurgeRequests, res.Backup.PurgeGranted)
	}
}

// A real shortage is still refused before anything is written: the disk is smaller than
// the device's data, so the inflated demand is not granted and the device ends with 105.
func TestRealShortageRefusedBeforeWriting(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	r := newRig(t, backupsim.Options{Quirks: backupsim.Quirks{PurgeDemand: 11 << 40}}, devicesim.DeviceConfig{})
	res, err := r.backup(t, mnt, false, nil)
	fe, ok := failure.As(err)
	if !ok || fe.Class != failure.NoSpace || fe.DeviceCode != 105 {
		t.Fatalf("backup onto a too small disk = %v; want NoSpace from the device (105)", err)
	}
	if res.Backup.FilesReceived != 0 || res.Backup.PurgeGranted != 0 {
		t.Errorf("received %d files, granted %d purges; want nothing written", res.Backup.FilesReceived, res.Backup.PurgeGranted)
	}
}

// The user taps Cancel on the passcode sheet: cancelled on the device, not "locked", and not
// retryable (retrying would raise the sheet again and again).
func TestPasscodeCancelledOnDevice(t *testing.T) {
	r := newRig(t, backupsim.Options{Quirks: backupsim.Quirks{CancelPasscode: true}}, devicesim.DeviceConfig{})
	r.cancelWindow = 5 * time.Second // the device's timeout scaled down like the other times here
	_, err := r.backup(t, t.TempDir(), false, nil)
	fe, ok := failure.As(err)
	if !ok || fe.Class != failure.CancelledOnDevice || fe.Retryable() {
		t.Fatalf("cancelled passcode = %v; want non-retryable CancelledOnDevice", err)
	}
}

// A long silent scan is waited out over USB; a host that died mid-backup leaves the device
// "already in progress" for a while: that is DeviceBusy (retryable), and it clears.
func TestScanDelayAndBusyAfterDrop(t *testing.T) {
	r := newRig(t, backupsim.Options{Quirks: backupsim.Quirks{ScanDelay: 500 * time.Millisecond, BusyAfterDrop: 3 * time.Second}},
		devicesim.DeviceConfig{DropBackupAfter: 256 << 10})
	_, err := r.backup(t, t.TempDir(), false, nil)
	if !errors.Is(err, failure.LinkLost) {
		t.Fatalf("backup with the link cut = %v; want LinkLost", err)
	}
	r.dev.SetDropBackupAfter(0)
	run := func(retries int) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := Backup(ctx, Request{UDID: r.udid, Root: t.TempDir(), LockRetry: 10 * time.Millisecond,
			PasscodeCancelWindow: -1, BusyRetries: retries, BusyWait: 100 * time.Millisecond})
		return err
	}
	// Without waiting: "already in progress" is DeviceBusy (retryable).
	if err := run(-1); !errors.Is(err, failure.DeviceBusy) {
		t.Fatalf("backup right after a dropped one = %v; want DeviceBusy", err)
	}
	// The engine waits it out (bounded) and the backup goes through, scan included.
	start := time.Now()
	if err := run(60); err != nil {
		t.Fatalf("backup that waits out the busy device: %v", err)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Errorf("backup finished before the simulated scan ended")
	}
	if c := r.agent.Counters(); c.Backups != 1 {
		t.Errorf("device counters %+v; want one successful backup", c)
	}
}

// usbmuxd lists the dashless USB serial; the backup folder, TargetIdentifier and Info.plist
// all use lockdown's dashed UDID, and the device accepts the request.
func TestSerialUDIDOneCanonicalUDID(t *testing.T) {
	r := newRig(t, backupsim.Options{}, devicesim.DeviceConfig{SerialUDID: true})
	root := t.TempDir()
	res, err := r.backup(t, root, false, nil)
	if err != nil {
		t.Fatalf("backup of a device listed by its USB serial: %v", err)
	}
	if res.UDID != r.udid || res.Dir != filepath.Join(root, r.udid) {
		t.Errorf("result UDID %q dir %q; want %q", res.UDID, res.Dir, r.udid)
	}
	info, err := backupfmt.ReadInfo(filepath.Join(root, r.udid, backupfmt.InfoPlistName))
	if err != nil || info.TargetIdentifier != r.udid {
		t.Errorf("Info.plist TargetIdentifier %q (%v); want %q", info.TargetIdentifier, err, r.udid)
	}
}

// Over Wi-Fi a silent scan longer than several probe intervals is tolerated, and a link that
// dies silently mid-scan ends the run as LinkLost within a few probe intervals.
func TestWiFiSilentScanToleratedDeadLinkBounded(t *testing.T) {
	r := newRig(t, backupsim.Options{Quirks: backupsim.Quirks{ScanDelay: 1500 * time.Millisecond}}, devicesim.DeviceConfig{WiFi: true})
	run := func(onPreparing func()) (Result, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fired := false
		start := time.Now()
		res, err := Backup(ctx, Request{UDID: r.udid, Root: t.TempDir(), LockRetry: 10 * time.Millisecond,
			PasscodeCancelWindow: -1, WiFiProbeEvery: 200 * time.Millisecond,
			Events: func(ev mobilebackup2.Event) {
				if onPreparing != nil && !fired && ev.Kind == mobilebackup2.EventPhase && ev.Phase == mobilebackup2.PhasePreparing {
					fired = true
					onPreparing()
				}
			}})
		return res, time.Since(start), err
	}
	if _, took, err := run(nil); err != nil {
		t.Fatalf("Wi-Fi backup with a 1.5 s silent scan (probes every 200 ms): %v after %s", err, took)
	}
	var dropped time.Time
	_, _, err := run(func() { dropped = time.Now(); r.dev.DropLinkSilently(true) })
	t.Cleanup(func() { r.dev.DropLinkSilently(false) })
	if !errors.Is(err, failure.LinkLost) {
		t.Fatalf("Wi-Fi backup whose link died silently = %v; want LinkLost", err)
	}
	if d := time.Since(dropped); d > 3*time.Second {
		t.Errorf("dead Wi-Fi link noticed after %s; want within a few 200 ms probes", d)
	}
}
