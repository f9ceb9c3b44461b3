package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"snapback/internal/device"
	"snapback/internal/mobilebackup2"
)

func TestClassifyDeviceErrors(t *testing.T) {
	cases := []struct {
		err  error
		want mobilebackup2.Code
	}{
		{fmt.Errorf("open: %w", device.ErrNotPaired), mobilebackup2.CodeNotPaired},
		{fmt.Errorf("lock: %w", device.ErrLockBusy), mobilebackup2.CodeDeviceBusy},
		{fmt.Errorf("start: %w", device.ErrLocked), mobilebackup2.CodeDeviceLocked},
		{device.ErrNotFound, mobilebackup2.CodeNotConnected},
		{device.ErrNoUsbmuxd, mobilebackup2.CodeNotConnected},
		{mobilebackup2.DeviceResultError(105, "x"), mobilebackup2.CodeNoSpace},
		{errors.New("strange"), mobilebackup2.CodeUnknown},
	}
	for _, tc := range cases {
		e := classify(context.Background(), tc.err)
		if e.Code != tc.want || e.Remedy == "" && tc.want != mobilebackup2.CodeUnknown {
			t.Errorf("classify(%v) = %v (remedy %q); want %v", tc.err, e.Code, e.Remedy, tc.want)
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(mobilebackup2.NewError(mobilebackup2.CodeCancelledOnDevice, nil))
	if e := classify(ctx, context.Canceled); e.Code != mobilebackup2.CodeCancelledOnDevice {
		t.Errorf("cancel on device = %v", e.Code)
	}
}
