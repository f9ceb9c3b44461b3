package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"snapback/internal/device"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
)

// Local refusals of SetEncryption, decided from lockdown's WillEncrypt before anything is
// asked of the device (as idevicebackup2 does), so the user is not prompted for a passcode
// for nothing.
var (
	ErrEncryptionAlreadyOn  = errors.New("backup encryption is already on")
	ErrEncryptionAlreadyOff = errors.New("backup encryption is off")
)

// EncryptionRequest describes one change of a device's backup encryption. Old == nil with
// New turns encryption on; Old with New == nil turns it off; both change the password.
type EncryptionRequest struct {
	// Devices finds the device (nil = usbmuxd alone); see Request.Devices.
	Devices *device.Host
	// UDID of the device; "" picks the only connected device.
	UDID string
	// Old and New are the current and the new backup password (nil = not given). The
	// engine sends them to the device only: never to logs, events or files.
	Old, New []byte
	// Events receives the run's events (passcode requested/dismissed on iOS 13 and later,
	// then finished or failed); may be nil. Same contract as Request.Events.
	Events func(mobilebackup2.Event)
	// Now is the clock (nil = time.Now); Log receives diagnostics (nil = discard).
	Now func() time.Time
	Log *slog.Logger
	// LockAttempts and LockRetry govern the sync-lock retries (defaults as for Backup).
	LockAttempts int
	LockRetry    time.Duration
}

// EncryptionStatus reports whether the device encrypts its backups (lockdown
// com.apple.mobile.backup WillEncrypt). Errors are *failure.Error.
// devs finds the device (nil = usbmuxd alone).
func EncryptionStatus(ctx context.Context, devs *device.Host, udid string) (on bool, err error) {
	sess, err := devs.Open(ctx, udid)
	if err != nil {
		return false, classify(ctx, err)
	}
	defer sess.Close()
	v, err := sess.Value(ctx, "com.apple.mobile.backup", "WillEncrypt")
	if err != nil {
		return false, classify(ctx, fmt.Errorf("read WillEncrypt: %w", err))
	}
	on, _ = v.(bool) // absent means the device never had encryption turned on
	return on, nil
}

// SetEncryption turns the device's backup encryption on or off or changes its password,
// with the orchestration of a backup (protocol.md §8.2, §11): lockdown session,
// notification_proxy watching the passcode prompt, mobilebackup2 handshake, the sync lock,
// then ChangePassword. It returns ErrEncryptionAlreadyOn or ErrEncryptionAlreadyOff when the
// device is already in the asked state; every other error is a *failure.Error
// (errors.Is with failure.WrongPassword for 207, ErrDeviceLocked for 208).
func SetEncryption(ctx context.Context, req EncryptionRequest) (err error) {
	if req.Old == nil && req.New == nil {
		return mobilebackup2.ErrNoPasswordGiven
	}
	o := startOp(req.Now, req.Log, req.Events)
	now, log, em := o.now, o.log, o.em
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer func() {
		switch {
		case err == nil:
			em.Finished()
		case errors.Is(err, ErrEncryptionAlreadyOn), errors.Is(err, ErrEncryptionAlreadyOff):
			em.Failed(failure.New(failure.DeviceError, err))
		default:
			e := classify(ctx, err)
			err = e
			em.Failed(e)
		}
	}()
	em.Begin()

	var udid string
	l, err := openLink(ctx, req.Devices, req.UDID, em, cancel, now, log, func(sess *device.Session) error {
		udid = sess.Entry.UDID
		v, err := sess.Value(ctx, "com.apple.mobile.backup", "WillEncrypt")
		if err != nil {
			return fmt.Errorf("read WillEncrypt: %w", err)
		}
		if on, _ := v.(bool); on && req.Old == nil {
			return ErrEncryptionAlreadyOn
		} else if !on && req.Old != nil {
			return ErrEncryptionAlreadyOff
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer l.close(ctx)
	// The sync lock keeps another host from backing up while the keybag changes, as iTunes
	// and idevicebackup2 do around every mobilebackup2 operation.
	if err := l.lockSync(ctx, req.LockAttempts, req.LockRetry); err != nil {
		return err
	}
	log.Debug("changing backup encryption", "udid", udid, "enable", req.Old == nil, "disable", req.New == nil)
	return l.client.ChangePassword(ctx, udid, req.Old, req.New)
}
