package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"snapback/internal/device"
	"snapback/internal/mobilebackup2"
)

// RestoreRequest describes one restore of a backup folder onto a device.
type RestoreRequest struct {
	// Devices finds the device (nil = usbmuxd alone); see Request.Devices.
	Devices *device.Host
	// UDID of the device to restore; "" picks the only connected device.
	UDID string
	// SourceDir is an Apple-format backup folder (any name: a snapshot folder is named by its
	// ID). It is only read, never written.
	SourceDir string
	// SourceUDID is the device that made the backup; "" means the target device.
	SourceUDID string
	// System restores system files too; Settings keeps the device's current settings
	// (RestorePreserveSettings); Reboot lets the device reboot when done.
	System, PreserveSettings, Reboot bool
	// SkipApps does not ask the device to reinstall the backup's apps (idevicebackup2
	// --skip-apps): no /iTunesRestore/RestoreApplications.plist is written.
	SkipApps bool
	// RemoveItemsNotRestored deletes what the backup does not hold from the device.
	RemoveItemsNotRestored bool
	// Password returns the password of an encrypted backup; called only if the backup is
	// encrypted. nil: encrypted backups fail with failure.WrongPassword.
	Password func() ([]byte, error)
	// Events, Now, Log, LockAttempts, LockRetry: as in Request.
	Events       func(mobilebackup2.Event)
	Now          func() time.Time
	Log          *slog.Logger
	LockAttempts int
	LockRetry    time.Duration
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	UDID     string
	Source   string
	Device   device.Info
	Restore  mobilebackup2.Result // FilesSent/BytesSent: what the device read
	Started  time.Time
	Finished time.Time
}

// Restore restores req.SourceDir onto the device, with the same orchestration as Backup
// (lockdown, notification_proxy, AFC sync lock dance, mobilebackup2). On failure the error is
// a *failure.Error and the last event is EventFailed. The source folder is never
// written (mobilebackup2 serves it read-only).
func Restore(ctx context.Context, req RestoreRequest) (res RestoreResult, err error) {
	o := startOp(req.Now, req.Log, req.Events)
	now, log, em := o.now, o.log, o.em
	res.Started, res.Source = now(), req.SourceDir
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer o.end(ctx, &err, &res.Finished)
	em.Begin()
	if req.SourceDir == "" {
		return res, errors.New("no backup folder to restore given")
	}

	l, err := openLink(ctx, req.Devices, req.UDID, em, cancel, now, log, func(sess *device.Session) error {
		res.UDID = sess.Entry.UDID
		var err error
		res.Device, err = sess.Info(ctx)
		return err
	})
	if err != nil {
		return res, err
	}
	defer l.close(ctx)
	// The same sync lock dance as a backup: no other host may sync the device while its
	// content is being replaced.
	if err := l.lockSync(ctx, req.LockAttempts, req.LockRetry); err != nil {
		return res, err
	}

	// The app list goes to the device before Restore, so it reinstalls the backup's apps.
	wroteApps := false
	if !req.SkipApps {
		if wroteApps, err = writeRestoreApps(ctx, l.afc, req.SourceDir, log); err != nil {
			return res, fmt.Errorf("write RestoreApplications.plist: %w", err)
		}
	}

	o.protocolEnded = true
	res.Restore, err = l.client.Restore(ctx, mobilebackup2.RestoreOptions{
		Source:                 req.SourceDir,
		SourceUDID:             req.SourceUDID,
		TargetUDID:             res.UDID,
		System:                 req.System,
		PreserveSettings:       req.PreserveSettings,
		Reboot:                 req.Reboot,
		RemoveItemsNotRestored: req.RemoveItemsNotRestored,
		Password:               req.Password,
		Events:                 em,
	})
	if err != nil && wroteApps {
		removeRestoreApps(ctx, l.afc, log)
	}
	l.release(ctx)
	return res, err
}
