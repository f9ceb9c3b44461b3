package mobilebackup2

import (
	"context"
	"errors"
	"strings"

	"snapback/internal/failure"
)

// DeviceResultError classifies a non-zero ErrorCode from the device's final message.
func DeviceResultError(code int64, desc string) *failure.Error {
	var c failure.Class
	switch code {
	case 208:
		c = failure.DeviceLocked
	case 105:
		c = failure.NoSpace
	case 207:
		c = failure.WrongPassword
	case 212:
		c = failure.SetupNotFinished
	case 104:
		// "Multiple errors uploading files": on real devices the screen locked or the device
		// stopped sending (pymobiledevice3 #820, libimobiledevice #1361). A failure of this
		// host's own writes is classified by the server before it gets here.
		c = failure.DeviceStopped
	default:
		c = failure.DeviceError
	}
	if strings.Contains(strings.ToLower(desc), "already in progress") {
		// After a host vanished mid-backup the device refuses new ones for a while
		// (libimobiledevice #1257 shows the stuck state after Ctrl-C): busy, retry later.
		c = failure.DeviceBusy
	}
	return &failure.Error{Class: c, DeviceCode: code, Detail: desc}
}

// Classify turns any error from a run into a *failure.Error, exactly once: a classified error
// passes through unchanged; cancellation, link loss and local I/O errors get their class.
func Classify(ctx context.Context, err error) *failure.Error {
	if err == nil {
		return nil
	}
	if e, ok := failure.As(err); ok {
		return e
	}
	if ctx != nil && ctx.Err() != nil {
		cause := context.Cause(ctx)
		if e, ok := failure.As(cause); ok {
			return e // cancelled for a classified reason (e.g. the user cancelled on the device)
		}
		return failure.New(failure.Cancelled, cause)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return failure.New(failure.Cancelled, err)
	}
	// A local filesystem error first: a pipe or file error must not read as a lost cable.
	if failure.IsLocalFS(err) {
		return failure.FromOS(err)
	}
	if failure.IsLinkLost(err) {
		return failure.New(failure.LinkLost, err)
	}
	return failure.New(failure.Unknown, err)
}

// orNil avoids the typed-nil-in-interface trap when returning a classified error.
func orNil(e *failure.Error) error {
	if e == nil {
		return nil
	}
	return e
}
