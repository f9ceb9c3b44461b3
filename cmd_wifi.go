package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"snapback/internal/device"
	"snapback/settings"
)

// deviceHost builds the device Host the settings ask for: wifi_discovery and pair_records
// from the settings file (and SNAPBACK_* environment), the learnt Wi-Fi addresses in the
// state folder. A missing settings file means the defaults (auto discovery); a broken one
// is an error naming the file, because silently falling back could back up over a path
// the user turned off.
func deviceHost(log *slog.Logger) (*device.Host, error) {
	path, err := settings.ConfigPath()
	if err != nil {
		return nil, err
	}
	s, err := settings.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w (fix the file; snapback config check names each problem)", err)
	}
	mode, err := device.ParseWiFiDiscovery(string(s.Host.WiFiDiscovery))
	if err != nil {
		return nil, err
	}
	cfg := device.HostConfig{WiFi: mode, PairRecordDir: s.Host.PairRecords, Logger: log}
	if dir, err := settings.StateDir(); err == nil {
		cfg.CacheFile = filepath.Join(dir, "wifi-devices.json")
	}
	return device.NewHost(cfg), nil
}
