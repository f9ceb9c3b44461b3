package engine

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"snapback/internal/device"
	"snapback/internal/mobilebackup2"
)

// RestoreRequest describes one restore of a backup folder onto a device.
type RestoreRequest struct {
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
	// RemoveItemsNotRestored deletes what the backup does not hold from the device.
	RemoveItemsNotRestored bool
	// Password returns the password of an encrypted backup; called only if the backup is
	// encrypted. nil: encrypted backups fail with mobilebackup2.ErrWrongPassword.
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
// a *mobilebackup2.Error and the last event is EventFailed. The source folder is never
// written (mobilebackup2 serves it read-only).
func Restore(ctx context.Context, req RestoreRequest) (res RestoreResult, err error) {
	now := req.Now
	if now == nil {
		now = time.Now
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if req.LockAttempts <= 0 {
		req.LockAttempts = 50
	}
	if req.LockRetry <= 0 {
		req.LockRetry = 200 * time.Millisecond
	}
	em := mobilebackup2.NewEmitter(req.Events, now)
	res.Started, res.Source = now(), req.SourceDir
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	protocolEnded := false
	defer func() {
		res.Finished = now()
		if err == nil {
			return
		}
		e := classify(ctx, err)
		err = e
		if !protocolEnded {
			em.Failed(e)
		}
	}()
	em.Begin()
	if req.SourceDir == "" {
		return res, errors.New("no backup folder to restore given")
	}

	sess, err := device.Open(ctx, req.UDID)
	if err != nil {
		return res, err
	}
	sessOpen := true
	defer func() {
		if sessOpen {
			sess.Close()
		}
	}()
	res.UDID = sess.Entry.UDID
	if res.Device, err = sess.Info(ctx); err != nil {
		return res, err
	}

	np, err := sess.StartNotifications(ctx)
	if err != nil {
		return res, err
	}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for name := range np.C() {
			switch name {
			case device.NotifyPasscodeShown:
				em.PasscodeRequested()
			case device.NotifyPasscodeDismissed:
				em.PasscodeDismissed()
			case device.NotifySyncCancel:
				cancel(mobilebackup2.NewError(mobilebackup2.CodeCancelledOnDevice, nil))
			default:
				log.Debug("device notification", "name", name)
			}
		}
	}()
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ccancel()
		if err := np.Close(cctx); err != nil {
			log.Debug("notification_proxy close", "err", err)
		}
		<-watchDone
	}()
	if err := np.Observe(observed...); err != nil {
		return res, err
	}
	afc, err := sess.StartAFC(ctx)
	if err != nil {
		return res, err
	}
	defer afc.Close()
	bconn, err := sess.StartService(ctx, device.ServiceBackup, true)
	if err != nil {
		return res, err
	}
	defer bconn.Close()
	sess.Close()
	sessOpen = false

	client := mobilebackup2.NewClient(bconn, now)
	if err := client.Handshake(ctx); err != nil {
		return res, err
	}

	// The same sync lock dance as a backup (protocol.md §8.2): no other host may sync the
	// device while its content is being replaced.
	if err := np.Post(device.NotifySyncWillStart); err != nil {
		return res, err
	}
	lock, err := afc.LockSync(ctx, req.LockAttempts, device.SleepWait(req.LockRetry), func() error {
		return np.Post(device.NotifySyncLockRequest)
	})
	if err != nil {
		return res, err
	}
	unlocked := false
	release := func() {
		if unlocked {
			return
		}
		unlocked = true
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ccancel()
		if err := lock.Unlock(cctx); err != nil {
			log.Debug("sync unlock", "err", err)
		}
		if err := np.Post(device.NotifySyncDidFinish); err != nil {
			log.Debug("post syncDidFinish", "err", err)
		}
	}
	defer release()
	if err := np.Post(device.NotifySyncDidStart); err != nil {
		return res, err
	}

	protocolEnded = true
	res.Restore, err = client.Restore(ctx, mobilebackup2.RestoreOptions{
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
	release()
	if derr := client.Disconnect(); derr != nil {
		log.Debug("mobilebackup2 disconnect", "err", derr)
	}
	return res, err
}
