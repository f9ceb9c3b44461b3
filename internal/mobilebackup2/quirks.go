package mobilebackup2

import (
	"context"
	"errors"
	"strings"
	"time"

	"snapback/internal/failure"
	"snapback/internal/wait"
)

// Real-device behaviours the host copes with (real-devices.md); the simulator models each
// of them in backupsim.Quirks.

// UnreadableFile is a file the device could not read: it sent part of it and then an error
// block (0x0B) instead of SUCCESS, and went on with the backup. iOS 17 does this for
// FileProvider's backup_manifest.db with "Input/output error (5)" (pymobiledevice3 #755).
type UnreadableFile struct {
	DevicePath   string `json:"device_path"`             // the device's name for it
	HostPath     string `json:"host_path"`               // where it would have landed, relative to the root
	FileID       string `json:"file_id,omitempty"`       // the blob name (SHA-1 of domain-path)
	Domain       string `json:"domain,omitempty"`        // from Manifest.db, when readable
	RelativePath string `json:"relative_path,omitempty"` // from Manifest.db, when readable
	Reason       string `json:"reason"`
}

// maxUnreadable bounds the list (a hostile device could fail every file).
const maxUnreadable = 10000

func (s *server) noteUnreadable(hostName, reason string) {
	if len(s.stats.Unreadable) >= maxUnreadable {
		return
	}
	id := hostName
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		id = id[i+1:]
	}
	// The device moves Snapshot/xx/<id> to xx/<id> later; the final place is what a reader
	// would look for.
	final := strings.Replace(hostName, s.res.udid+"/Snapshot/", s.res.udid+"/", 1)
	s.stats.Unreadable = append(s.stats.Unreadable, UnreadableFile{
		DevicePath: string(s.devName), HostPath: final, FileID: id, Reason: strings.TrimSpace(reason),
	})
}

// noteHostErr remembers the first failure of this host's own writes. A refused hostile path
// is the device's fault, not the host's, and does not count.
func (s *server) noteHostErr(err error) {
	if s.hostErr != nil || err == nil || errors.Is(err, ErrBadPath) {
		return
	}
	if failure.IsLocalFS(err) || failure.FromOS(err).Class != failure.LocalIO || isErrno(err) {
		s.hostErr = err
	}
}

// DefaultPasscodeCancelWindow: the device dismisses its passcode sheet by itself after about
// 3 minutes and ends with 208 (libimobiledevice #1380). A sheet dismissed well before that,
// followed by 208, was cancelled by the user (the code for Cancel itself is not public);
// retrying would only raise the sheet again.
const DefaultPasscodeCancelWindow = 150 * time.Second

// deviceResult classifies the device's final non-zero ErrorCode, using what the run saw.
func deviceResult(code int64, desc string, ev *Emitter, cancelWindow time.Duration) *failure.Error {
	e := DeviceResultError(code, desc)
	if code == 208 && ev != nil && cancelWindow > 0 {
		ev.waitDismissed(2 * time.Second)
		if shown, gone := ev.passcodeTimes(); !shown.IsZero() && !gone.IsZero() && gone.Sub(shown) < cancelWindow {
			return &failure.Error{Class: failure.CancelledOnDevice, DeviceCode: code, Detail: "the passcode prompt was cancelled on the device"}
		}
	}
	return e
}

// busyResult reports a device refusing because a backup is already in progress.
func busyResult(code int64, desc string) bool {
	return DeviceResultError(code, desc).Class == failure.DeviceBusy
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error { return wait.Sleep(ctx, d) }
