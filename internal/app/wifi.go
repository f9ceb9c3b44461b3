package app

import (
	"log/slog"
	"path/filepath"

	"snapback/internal/device"
	"snapback/settings"
)

// DeviceHost builds the device Host the settings ask for: wifi_discovery and pair_records
// (host-wide keys; a change takes effect at the next start), with what built-in discovery
// learnt kept in the state folder. s may be nil (defaults: auto). Close it when done.
func DeviceHost(s *settings.Settings, log *slog.Logger) *device.Host {
	hs := settings.HostSettings{WiFiDiscovery: settings.WiFiAuto}
	if s != nil {
		hs = s.Host
	}
	mode, err := device.ParseWiFiDiscovery(string(hs.WiFiDiscovery))
	if err != nil {
		mode = device.WiFiAuto // settings validated it already
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := device.HostConfig{WiFi: mode, PairRecordDir: hs.PairRecords, Logger: log.With("component", "wifi")}
	if dir, err := settings.StateDir(); err == nil {
		cfg.CacheFile = filepath.Join(dir, "wifi-devices.json")
	}
	return device.NewHost(cfg)
}
