package device

import (
	"context"
	"fmt"
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
