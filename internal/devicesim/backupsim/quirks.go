package backupsim

import (
	"context"
	"io"
	"math/rand/v2"
	"time"

	"snapback/internal/devicelink"
	"snapback/internal/wait"
)

// Quirks are what real devices do to a backup that a kind simulator would not
// (real-devices.md). Each field is evidence-backed; see the comments.
type Quirks struct {
	// ScanDelay is silence after the Backup request (and the passcode) before the device's
	// first message: BackupAgent2 scanning, from 23 s to over an hour on devices with many
	// photos, with no keep-alive (libimobiledevice #1384, #1193, #1670).
	ScanDelay time.Duration

	// FileErrors files fail mid-upload: the device sends part of the file and then an error
	// block (code 0x0B, ERROR_REMOTE) with "Input/output error (5)", and the backup still
	// completes with ErrorCode 0. iOS 17 does this for FileProvider's backup_manifest.db
	// (pymobiledevice3 #755: "Failed to fully upload ... Device file name:
	// /var/mobile/Library/Application Support/FileProvider/backup/backup_manifest.db.
	// Reason: Input/output error (5)"; pymobiledevice3 PR #507 ignores it). Whether the row
	// stays in Manifest.db is not known; the simulator keeps it (the harder case for a host).
	FileErrors int

	// LockAfter, if > 0, makes the device stop uploading once that many content bytes went
	// out (the screen locked, or BackupAgent2 gave up): the batch ends and the backup ends
	// with ErrorCode 104 "Multiple errors uploading files" (pymobiledevice3 #820,
	// libimobiledevice #1361 where the syslog shows BackupAgent2 "Failed to upload ... in
	// batch N" before the 104).
	LockAfter int64

	// PurgeDemand, if > 0, is the free space the device claims to need instead of the
	// upload size: iOS 17.4 and iOS 26 devices asked for absurd amounts, terabytes, more than
	// the device holds (pymobiledevice3 #1879, #1886; libimobiledevice #1555). The device
	// then sends DLMessagePurgeDiskSpace; when the host answers with success and a free
	// space that covers the real upload, it goes on (the behaviour pymobiledevice3 PR #1884
	// relies on by reporting a large free space); otherwise it ends with 105.
	PurgeDemand int64

	// BusyAfterDrop keeps the device refusing Backup requests ("backup already in
	// progress") for this long after a backup whose host vanished mid-run; a device reboot
	// or the wait clears it (libimobiledevice #1257 shows the stuck state after Ctrl-C).
	BusyAfterDrop time.Duration

	// CancelPasscode makes the simulated user tap Cancel on the passcode sheet: the sheet
	// is dismissed within a second and the device ends with 208. The exact code for Cancel
	// is not public (libimobiledevice #1380 documents only the ~3 minute timeout → 208);
	// the simulator keeps 208 and lets the quick dismissal tell the two apart.
	CancelPasscode bool
}

// Realistic returns quirks in plausible proportions for backup request n (1-based) of a
// device, deterministic per seed: one unreadable file in every backup (the iOS 17
// FileProvider bug is persistent), an inflated free-space demand on every backup, a scan
// of scan before each backup, and on one backup in seven the device locks mid-upload.
func Realistic(seed int64, scan time.Duration) func(n int64) Quirks {
	return func(n int64) Quirks {
		r := rand.New(rand.NewPCG(uint64(seed), uint64(n)))
		q := Quirks{ScanDelay: scan, FileErrors: 1, PurgeDemand: 11 << 40, BusyAfterDrop: 2 * time.Second}
		if n%7 == 3 {
			q.LockAfter = 1 + r.Int64N(4<<20)
		}
		return q
	}
}

// RealisticLinkDrops is the link-drop plan of a realistic device (devicesim.DeviceConfig
// DropLinkPlan): for mobilebackup2 connection n, how many bytes go through before the link
// drops. One backup in seven loses its link part-way, a different one from the backup where
// the device locks. Evidence that links drop mid-backup: real-devices.md row 7 ("the link
// drops when the phone sleeps"; netmuxd #14, and netmuxd #34 where Wi-Fi devices "drop the
// connection" on heartbeat failures) and row 6 (libimobiledevice #1384: a backup silent for
// minutes during the scan, where a host cannot tell a dead link from a busy device). The rate
// is a guess: no public source counts drops per backup.
// Deterministic per seed, like Realistic.
func RealisticLinkDrops(seed int64) func(n int64) int64 {
	return func(n int64) int64 {
		if n%7 != 5 {
			return 0
		}
		r := rand.New(rand.NewPCG(uint64(seed), uint64(n)^0x6c696e6b))
		// Within the first 128 KiB: every simulated backup, even one with nothing new, moves more
		// than that (the Manifest.db exchange), so the planned drop always happens.
		return 16<<10 + r.Int64N(112<<10)
	}
}

// quirksFor returns the quirks of backup request n.
func (d *Device) quirksFor(n int64) Quirks {
	if d.opts.QuirkPlan != nil {
		return d.opts.QuirkPlan(n)
	}
	return d.opts.Quirks
}

// sleepCtx waits d or until ctx ends; an end of ctx is the link's end for the device.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return linkErr(wait.Sleep(ctx, d))
}

// remoteFailure is a blob the device cannot read: after `after` bytes it sends an error
// block instead of SUCCESS. uploadBatch recognises it.
type remoteFailure struct {
	r     io.Reader
	after int64
	text  string
}

func (remoteFailure) Read([]byte) (int, error) { return 0, io.EOF }

// errTextIO is the reason iOS gives for the unreadable FileProvider file (pymobiledevice3 #755).
const errTextIO = "Input/output error (5)"

// writeFailedFile sends the first bytes of a file and ends it with ERROR_REMOTE.
func (s *session) writeFailedFile(f remoteFailure, buf []byte) (int64, error) {
	n, err := s.c.WriteFileData(io.LimitReader(f.r, f.after), buf)
	if err != nil {
		return n, linkErr(err)
	}
	return n, linkErr(s.c.WriteBlock(devicelink.CodeErrorRemote, []byte(f.text)))
}

// busyUntil reports until when the device refuses new backups after a dropped host.
func (d *Device) stuckUntil() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stuck
}
