package mobilebackup2

import (
	"context"
	"errors"
	"fmt"

	"snapback/internal/devicelink"
	"snapback/internal/failure"
	"snapback/internal/plistio"
)

// ErrNoPasswordGiven is returned by ChangePassword when neither password is given.
var ErrNoPasswordGiven = errors.New("change password: neither an old nor a new password given")

// ChangePassword changes the backup encryption of device udid (protocol.md §7.4, §7.10):
// oldPw == nil turns encryption on with newPw, newPw == nil turns it off (oldPw must be the
// current password), both change the password. On iOS 13 and later the device first asks for its passcode; the
// caller observes com.apple.LocalAuthentication.ui.presented to tell the user.
//
// Errors are classified (*failure.Error): failure.WrongPassword for 207 (old password wrong),
// failure.DeviceLocked for 208 (passcode not entered), failure.DeviceError for other refusals (for
// example encryption already on). The passwords are sent to the device only; they never
// appear in errors.
func (c *Client) ChangePassword(ctx context.Context, udid string, oldPw, newPw []byte) (err error) {
	defer c.watch(ctx)()
	defer func() { err = orNil(Classify(ctx, err)) }()
	if oldPw == nil && newPw == nil {
		return ErrNoPasswordGiven
	}
	// No Options wrapper: libimobiledevice sends this one with mobilebackup2_send_message,
	// the keys at the top level, and an absent key is what tells the device which operation
	// is meant.
	req := map[string]any{"MessageName": "ChangePassword", "TargetIdentifier": udid}
	if oldPw != nil {
		req["OldPassword"] = string(oldPw)
	}
	if newPw != nil {
		req["NewPassword"] = string(newPw)
	}
	if err := c.dl.SendProcessMessage(req); err != nil {
		return fmt.Errorf("send ChangePassword request: %w", err)
	}
	final, err := c.serveUntilResult()
	if err != nil {
		return err
	}
	code, _ := plistio.Int(final["ErrorCode"])
	if code != 0 {
		return DeviceResultError(code, str(final["ErrorDescription"]))
	}
	return nil
}

// serveUntilResult answers a request that involves no files (ChangePassword) until the
// device's final DLMessageProcessMessage. A device does not ask for files then; if it does
// anyway it gets an error status (never a silent drop, which would stall it), and a file
// stream, which cannot be refused without reading it, ends the session.
func (c *Client) serveUntilResult() (map[string]any, error) {
	for {
		msg, err := c.dl.ReadMessage()
		if err != nil {
			return nil, fmt.Errorf("read device message: %w", err)
		}
		switch msg.Name() {
		case devicelink.ProcessMessage:
			d, ok := msg.Arg(1).(map[string]any)
			if !ok {
				return nil, protoErr("final message without a dictionary")
			}
			if _, ok := plistio.Int(d["ErrorCode"]); !ok {
				return nil, protoErr("final message without an integer ErrorCode")
			}
			return d, nil
		case devicelink.Disconnect:
			e := failure.New(failure.LinkLost, nil)
			e.Detail = "the device ended the session before reporting a result"
			return nil, e
		case devicelink.UploadFiles, devicelink.DownloadFiles:
			return nil, protoErr("the device asked for file transfer (%s) outside a backup", msg.Name())
		default:
			if err := c.dl.SendStatus(-1, "Operation not supported", nil); err != nil {
				return nil, err
			}
		}
	}
}
