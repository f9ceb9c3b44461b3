package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Code says why a backup failed, in the terms a user can act on.
type Code int

// Failure classes. Each has one user message and one remedy (see Error).
const (
	CodeUnknown           Code = iota
	CodeCancelled              // ctx cancelled by the host (user, shutdown)
	CodeDeviceLocked           // MBErrorDomain 208: passcode not entered / device locked
	CodeNoSpace                // 105: not enough space on the host
	CodeWrongPassword          // 207: backup password wrong or missing
	CodeSetupNotFinished       // 212: Setup Assistant still running on the device
	CodeSnapshotFolder         // 104: the Snapshot folder could not be written or removed
	CodeLinkLost               // EOF / reset mid-run: cable, Wi-Fi, sleep, device reboot
	CodeNotPaired              // no pair record, or the device does not trust this computer
	CodeDeviceBusy             // another sync holds the device's sync lock
	CodeProtocol               // the device spoke something we do not understand
	CodeIncomplete             // ErrorCode 0 but Status.plist does not say "finished"
	CodeDeviceError            // another non-zero device ErrorCode
	CodeLocalIO                // a local filesystem operation failed fatally
	CodeCancelledOnDevice      // the user cancelled the sync on the device
	CodeNotConnected           // no such device connected, or usbmuxd not running
)

var codeNames = map[Code]string{
	CodeUnknown:           "unknown",
	CodeCancelled:         "cancelled",
	CodeDeviceLocked:      "device-locked",
	CodeNoSpace:           "no-space",
	CodeWrongPassword:     "wrong-password",
	CodeSetupNotFinished:  "setup-not-finished",
	CodeSnapshotFolder:    "snapshot-folder",
	CodeLinkLost:          "link-lost",
	CodeNotPaired:         "not-paired",
	CodeDeviceBusy:        "device-busy",
	CodeProtocol:          "protocol",
	CodeIncomplete:        "incomplete",
	CodeDeviceError:       "device-error",
	CodeLocalIO:           "local-io",
	CodeCancelledOnDevice: "cancelled-on-device",
	CodeNotConnected:      "not-connected",
}

// String returns a stable, lowercase name (used in JSON output).
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code-%d", int(c))
}

// MarshalText makes Code readable in JSON.
func (c Code) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

type classInfo struct {
	msg, remedy string
	retry       bool
}

var classes = map[Code]classInfo{
	CodeUnknown:           {"backup failed", "try again; if it keeps failing, run with --verbose and report the log", true},
	CodeCancelled:         {"backup cancelled", "", true},
	CodeDeviceLocked:      {"the device stayed locked: the passcode was not entered on the device", "unlock the device and enter its passcode when it asks during the backup (iOS 16.1 and later ask every time)", true},
	CodeNoSpace:           {"not enough free space for the backup", "free space on the backup disk or choose another backup location", false},
	CodeWrongPassword:     {"the backup password is wrong or missing", "enter the backup encryption password set on this device", false},
	CodeSetupNotFinished:  {"the device has not finished its setup", "finish the setup assistant on the device, then try again", false},
	CodeSnapshotFolder:    {"the device could not finish its snapshot folder on the host", "check that the backup folder is writable and on a regular local filesystem, then try again", true},
	CodeLinkLost:          {"the connection to the device was lost", "keep the device connected and awake (check the cable or Wi-Fi), then try again", true},
	CodeNotPaired:         {"this computer is not trusted by the device", "unlock the device, connect it by USB and tap Trust, then try again", false},
	CodeDeviceBusy:        {"the device is busy with another sync", "wait for the other sync (Finder, iTunes or another tool) to finish or quit it, then try again", true},
	CodeProtocol:          {"the device answered in an unexpected way", "update Snapback and try again; report the log if it persists", true},
	CodeIncomplete:        {"the device ended without completing the backup", "try again; the previous backup is unchanged", true},
	CodeDeviceError:       {"the device reported an error", "try again; restart the device if it keeps failing", true},
	CodeLocalIO:           {"writing the backup failed on this computer", "check the backup disk (space, permissions, health), then try again", true},
	CodeCancelledOnDevice: {"the backup was cancelled on the device", "", true},
	CodeNotConnected:      {"the device is not connected", "connect the device by USB (or enable Wi-Fi sync) and unlock it; on Linux make sure usbmuxd is running", true},
}

// Error is the one classified failure of a backup run. Callers branch on Code (or errors.Is
// with the sentinels below), show Error() and Remedy to users, and retry only if Retryable.
type Error struct {
	Code        Code
	DeviceCode  int64  // MBErrorDomain code from the device, 0 if none
	Description string // device ErrorDescription or a short detail
	Cause       error  // underlying error, if any
	Remedy      string // what the user can do
	Retryable   bool

	sentinel bool
}

// Error names the cause, the detail and the fix.
func (e *Error) Error() string {
	msg := classes[e.Code].msg
	if msg == "" {
		msg = "backup failed"
	}
	if e.DeviceCode != 0 {
		msg += fmt.Sprintf(" (device error %d", e.DeviceCode)
		if e.Description != "" {
			msg += ": " + e.Description
		}
		msg += ")"
	} else if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	if e.Remedy != "" {
		msg += "; " + e.Remedy
	}
	return msg
}

// Unwrap exposes the cause (for example context.Canceled).
func (e *Error) Unwrap() error { return e.Cause }

// Is matches the sentinels by Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.sentinel && t.Code == e.Code
}

// sentinel marks the package-level values below so that Is compares codes only for them.
func sentinel(c Code) *Error { return &Error{Code: c, sentinel: true} }

// Sentinels for errors.Is.
var (
	ErrCancelled         = sentinel(CodeCancelled)
	ErrDeviceLocked      = sentinel(CodeDeviceLocked)
	ErrNoSpace           = sentinel(CodeNoSpace)
	ErrWrongPassword     = sentinel(CodeWrongPassword)
	ErrSetupNotFinished  = sentinel(CodeSetupNotFinished)
	ErrSnapshotFolder    = sentinel(CodeSnapshotFolder)
	ErrLinkLost          = sentinel(CodeLinkLost)
	ErrNotPaired         = sentinel(CodeNotPaired)
	ErrDeviceBusy        = sentinel(CodeDeviceBusy)
	ErrProtocol          = sentinel(CodeProtocol)
	ErrIncomplete        = sentinel(CodeIncomplete)
	ErrDeviceError       = sentinel(CodeDeviceError)
	ErrLocalIO           = sentinel(CodeLocalIO)
	ErrCancelledOnDevice = sentinel(CodeCancelledOnDevice)
	ErrNotConnected      = sentinel(CodeNotConnected)
)

// NewError builds a classified error with the class's remedy and retry flag.
func NewError(code Code, cause error) *Error {
	c := classes[code]
	return &Error{Code: code, Cause: cause, Remedy: c.remedy, Retryable: c.retry}
}

// DeviceResultError classifies a non-zero ErrorCode from the device's final message.
func DeviceResultError(code int64, desc string) *Error {
	var c Code
	switch code {
	case 208:
		c = CodeDeviceLocked
	case 105:
		c = CodeNoSpace
	case 207:
		c = CodeWrongPassword
	case 212:
		c = CodeSetupNotFinished
	case 104:
		c = CodeSnapshotFolder
	default:
		c = CodeDeviceError
	}
	e := NewError(c, nil)
	e.DeviceCode = code
	e.Description = desc
	return e
}

// Classify turns any error from a run into an *Error, exactly once: an *Error passes through
// unchanged; cancellation, link loss and local I/O errors get their class.
func Classify(ctx context.Context, err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if ctx != nil && ctx.Err() != nil {
		cause := context.Cause(ctx)
		if errors.As(cause, &e) {
			return e // cancelled for a classified reason (e.g. the user cancelled on the device)
		}
		return NewError(CodeCancelled, cause)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return NewError(CodeCancelled, err)
	}
	if isLinkLost(err) {
		return NewError(CodeLinkLost, err)
	}
	var pe *os.PathError
	if errors.As(err, &pe) || errors.Is(err, syscall.ENOSPC) {
		if errors.Is(err, syscall.ENOSPC) {
			return NewError(CodeNoSpace, err)
		}
		return NewError(CodeLocalIO, err)
	}
	return NewError(CodeUnknown, err)
}

// isLinkLost reports errors that mean the byte stream to the device broke.
func isLinkLost(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
