package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"snapback/internal/device"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
)

func TestClassifyDeviceErrors(t *testing.T) {
	cases := []struct {
		err  error
		want failure.Class
	}{
		{fmt.Errorf("open: %w", device.ErrNotPaired), failure.NotPaired},
		{fmt.Errorf("lock: %w", device.ErrLockBusy), failure.DeviceBusy},
		{fmt.Errorf("start: %w", device.ErrLocked), failure.DeviceLocked},
		{device.ErrNotFound, failure.NotConnected},
		{device.ErrNoUsbmuxd, failure.NotConnected},
		{mobilebackup2.DeviceResultError(105, "x"), failure.NoSpace},
		{errors.New("strange"), failure.Unknown},
	}
	for _, tc := range cases {
		e := classify(context.Background(), tc.err)
		if e.Class != tc.want || e.Remedy() == "" && tc.want != failure.Unknown {
			t.Errorf("classify(%v) = %v (remedy %q); want %v", tc.err, e.Class, e.Remedy(), tc.want)
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(failure.New(failure.CancelledOnDevice, nil))
	if e := classify(ctx, context.Canceled); e.Class != failure.CancelledOnDevice {
		t.Errorf("cancel on device = %v", e.Class)
	}
}
