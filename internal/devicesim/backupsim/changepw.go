package backupsim

import (
	"context"
	"errors"
	"fmt"

	"snapback/internal/backupcrypto"
)

// NotifyDomainChanged is posted after ChangePassword changed the backup domain's settings
// (WillEncrypt), so hosts that watch lockdown values re-read them (protocol.md §7.10).
const NotifyDomainChanged = "com.apple.mobile.backup.domain_changed"

// Encryption states recorded in StateDir once ChangePassword ran. From then on they, not
// Options.Password, decide whether the device encrypts: a real device keeps its setting
// across reboots whatever the host or the command line say.
const (
	encOn  = "on"
	encOff = "off"
)

// ErrorCode and description for a ChangePassword whose old password does not unlock the
// device's keybag (protocol.md §7.7, 207 family).
const (
	codeInvalidPassword = 207
	descInvalidPassword = "Invalid password"
)

// changePasswordRequest handles ChangePassword (protocol.md §7.4, §7.10). The keys sit at the
// top level of the request, without an Options wrapper: NewPassword alone enables
// encryption, OldPassword alone disables it, both change the password.
func (s *session) changePasswordRequest(ctx context.Context, req map[string]any) error {
	d := s.d
	// A backup or restore reads the keybag without d.mu; holding busy keeps them apart.
	if !d.busy.TryLock() {
		return s.reply(100, "A backup is already in progress", "")
	}
	defer d.busy.Unlock()

	code, desc, err := s.changePassword(ctx, req)
	if err != nil {
		return err
	}
	d.mu.Lock()
	if code == 0 {
		d.counters.PasswordChanges++
	} else {
		d.counters.FailedPasswordChanges++
	}
	d.counters.LastErrorCode, d.counters.LastErrorDescription = code, desc
	saveErr := d.saveLocked()
	d.mu.Unlock()
	if code == 0 {
		s.n.Post(NotifyDomainChanged)
	}
	if err := s.reply(code, desc, ""); err != nil {
		return err
	}
	return saveErr
}

// changePassword checks and applies one request. A non-nil error means the link failed;
// otherwise code (0 on success) and desc say how the request ends.
func (s *session) changePassword(ctx context.Context, req map[string]any) (code int, desc string, err error) {
	d := s.d
	oldPw, hasOld := req["OldPassword"].(string)
	newPw, hasNew := req["NewPassword"].(string)
	encrypted := d.WillEncrypt()
	switch {
	case !hasOld && !hasNew:
		return 100, "ChangePassword needs OldPassword, NewPassword or both", nil
	case hasNew && newPw == "":
		return 100, "The new backup password is empty", nil
	case hasNew && !hasOld && encrypted:
		return 100, "Backup encryption is already enabled", nil
	case hasOld && !encrypted:
		return 100, "Backup encryption is not enabled", nil
	}
	if d.changePasscodeRequired() || d.opts.FailCode == 208 {
		entered, err := s.passcode(ctx)
		if err != nil {
			return 0, "", err
		}
		if !entered {
			return 208, describe(208), nil
		}
	}
	if hasOld {
		// The device's only check is unlocking its keybag, as MKBKeyBagUnlock does: this
		// costs the full KDF, like on a real device.
		keys, err := backupcrypto.Unlock(d.bag, []byte(oldPw))
		if errors.Is(err, backupcrypto.ErrWrongPassword) {
			return codeInvalidPassword, descInvalidPassword, nil
		}
		if err != nil {
			return 100, fmt.Sprintf("Keybag error: %v", err), nil
		}
		keys.Destroy()
	}

	var bag []byte
	var keys *backupcrypto.Keys
	if hasNew {
		// A new keybag, not a re-wrapped one: new class keys, so nothing of the host's earlier
		// backup carries over and the next backup is full.
		bag, keys, err = backupcrypto.NewBackupKeyBag([]byte(newPw), backupcrypto.BagOptions{DPIC: d.opts.KDFRounds})
		if err != nil {
			return 100, fmt.Sprintf("Keybag error: %v", err), nil
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.keys != nil {
		d.keys.Destroy()
	}
	d.bag, d.keys, d.lastUUID, d.last = bag, keys, "", nil
	d.encState, d.kek = encOff, nil
	if keys != nil {
		d.encState, d.kek = encOn, keys.KEK()
	}
	return 0, "", nil
}

// changePasscodeRequired: iOS 13 and later ask for the device passcode before changing the
// backup password (protocol.md §7.10); Options.PasscodeRequired overrides, as for Backup.
func (d *Device) changePasscodeRequired() bool {
	if d.opts.PasscodeRequired != nil {
		return *d.opts.PasscodeRequired
	}
	return versionAtLeast(d.opts.Identity.ProductVersion, 13, 0)
}

// checkPassword reports whether pw unlocks the device's current keybag (restore requests).
func (d *Device) checkPassword(pw string) bool {
	if d.bag == nil || pw == "" {
		return false
	}
	keys, err := backupcrypto.Unlock(d.bag, []byte(pw))
	if err != nil {
		return false
	}
	keys.Destroy()
	return true
}
