package device

import (
	"context"
	"fmt"
	"time"
)

// Probe checks that the device still answers: a new usbmuxd connection to its lockdownd and
// one QueryType, bounded by timeout. Over Wi-Fi this is how a host tells a dead link from a
// long silent scan (libimobiledevice #1384, #1193: no keep-alive while BackupAgent2 scans,
// sometimes for an hour): lockdownd keeps answering while the backup agent is busy, and a
// device that left the network does not.
func Probe(ctx context.Context, e Entry, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if e.Via == FoundWiFiDirect {
		return probeDirect(ctx, e, timeout)
	}
	mux, c, err := dialMux(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	defer bind(ctx, c)()
	ld, err := mux.ConnectLockdown(e.DeviceID)
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("connect to lockdownd of %s: %w", e.UDID, err))
	}
	s := &Session{Entry: e, ld: ld, conn: c}
	if _, err := s.request(ctx, map[string]any{"Request": "QueryType"}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s did not answer within %s", e.UDID, timeout)
		}
		return err
	}
	return nil
}

// PublicName reads the device's name without a session: lockdown answers a public subset
// (DeviceName, ProductType, UniqueDeviceID…) to any host, so a device that does not trust
// this computer yet can still be called by its name ("Tap Trust on Anna's iPhone").
func PublicName(ctx context.Context, e Entry) (string, error) {
	mux, c, err := dialMux(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	defer bind(ctx, c)()
	ld, err := mux.ConnectLockdown(e.DeviceID)
	if err != nil {
		return "", ctxErr(ctx, err)
	}
	return valueString(ctx, &Session{Entry: e, ld: ld, conn: c}, "DeviceName")
}
