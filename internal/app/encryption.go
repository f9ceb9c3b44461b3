package app

import (
	"context"
	"errors"
	"fmt"

	"snapback/internal/device"
	"snapback/internal/engine"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
	"snapback/settings"
)

// passwordNeeded is the failure when a device's `encryption` setting asks for a change that
// needs its backup password and none is stored in the keychain. It matches
// settings.ErrSecretNotFound and failure.PasswordNeeded; its remedy names the command.
func passwordNeeded(udid string, want settings.Encryption) *failure.Error {
	return &failure.Error{Class: failure.PasswordNeeded, Cause: settings.ErrSecretNotFound,
		Detail: fmt.Sprintf("the settings ask for backup encryption %s on %s", want, udid),
		Fix:    fmt.Sprintf("run `snapback password set --udid %s`", udid)}
}

// EnsureEncryption brings the device's backup encryption to what its settings want, before
// a backup: `on` turns it on with the keychain's password, `off` turns it off with it,
// `keep` (or "") changes nothing. A device already in the wanted state costs one lockdown
// read. events (may be nil) receives the change's events, among them the passcode prompt
// iOS 13 and later show; a wrong stored password is failure.WrongPassword, a
// missing one a *PasswordNeededError. The password goes to the device only.
func EnsureEncryption(ctx context.Context, devs *device.Host, udid string, want settings.Encryption, secrets settings.Secrets, events func(mobilebackup2.Event)) error {
	if want != settings.EncryptionOn && want != settings.EncryptionOff {
		return nil
	}
	on, err := engine.EncryptionStatus(ctx, devs, udid)
	if err != nil {
		return err
	}
	if on == (want == settings.EncryptionOn) {
		return nil
	}
	pw, err := secrets.Get(ctx, udid)
	if errors.Is(err, settings.ErrSecretNotFound) {
		return passwordNeeded(udid, want)
	}
	if err != nil {
		return failure.New(failure.Keychain, fmt.Errorf("backup password of %s: %w", udid, err))
	}
	req := engine.EncryptionRequest{Devices: devs, UDID: udid, Events: events}
	if want == settings.EncryptionOn {
		req.New = []byte(pw)
	} else {
		req.Old = []byte(pw)
	}
	err = engine.SetEncryption(ctx, req)
	if errors.Is(err, engine.ErrEncryptionAlreadyOn) || errors.Is(err, engine.ErrEncryptionAlreadyOff) {
		return nil // changed meanwhile (another host, the user): the wanted state holds
	}
	if err != nil {
		if _, ok := failure.As(err); ok {
			return err
		}
		return failure.New(failure.Unknown, fmt.Errorf("turn backup encryption %s: %w", want, err))
	}
	return nil
}
