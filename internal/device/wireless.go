package device

import (
	"context"
	"errors"
	"fmt"

	"snapback/internal/failure"
)

// Wi-Fi sync (real-devices.md row 7): a device offers lockdown over Wi-Fi only when
// EnableWifiConnections is true in the com.apple.mobile.wireless_lockdown domain. Finder's
// "Show this iPhone when on Wi-Fi" and iMazing set it; pymobiledevice3 lockdown.py
// set/get_enable_wifi_connections do the same.
const (
	domainWirelessLockdown = "com.apple.mobile.wireless_lockdown"
	keyEnableWifi          = "EnableWifiConnections"
)

// WifiConnections reports whether the device accepts lockdown connections over Wi-Fi.
func (s *Session) WifiConnections(ctx context.Context) (bool, error) {
	v, err := s.Value(ctx, domainWirelessLockdown, keyEnableWifi)
	if err != nil {
		return false, err
	}
	b, _ := v.(bool)
	return b, nil
}

// SetWifiConnections switches Wi-Fi sync on or off.
func (s *Session) SetWifiConnections(ctx context.Context, on bool) error {
	_, err := s.request(ctx, map[string]any{"Request": "SetValue", "Domain": domainWirelessLockdown, "Key": keyEnableWifi, "Value": on})
	if err != nil {
		return fmt.Errorf("set %s: %w", keyEnableWifi, err)
	}
	return nil
}

// SwitchWifi opens a session to the device e, sets Wi-Fi sync to *want (nil only reads it) and
// reads it back: the one path `snapback wifi` and the tray's "Back Up over Wi-Fi" both use. Its
// errors are classified (NotPaired, NotConnected, DeviceError), so callers pass them on.
func SwitchWifi(ctx context.Context, e Entry, want *bool) (bool, error) {
	return (*Host)(nil).SwitchWifi(ctx, e, want)
}

// SwitchWifi is SwitchWifi for a device h found (over the mux or directly over Wi-Fi); a nil
// h uses usbmuxd alone.
func (h *Host) SwitchWifi(ctx context.Context, e Entry, want *bool) (bool, error) {
	s, err := h.OpenEntry(ctx, e)
	if err != nil {
		if errors.Is(err, ErrNotPaired) {
			return false, failure.New(failure.NotPaired, err)
		}
		return false, failure.New(failure.NotConnected, err)
	}
	defer s.Close()
	if want != nil {
		if err := s.SetWifiConnections(ctx, *want); err != nil {
			return false, failure.New(failure.DeviceError, err)
		}
	}
	on, err := s.WifiConnections(ctx)
	if err != nil {
		return false, failure.New(failure.DeviceError, err)
	}
	return on, nil
}
