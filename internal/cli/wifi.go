package cli

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

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

// connection names how a device was found, for the devices table.
func connection(e device.Entry) string {
	switch e.Via {
	case device.FoundWiFiMux:
		return "wifi via mux"
	case device.FoundWiFiDirect:
		return "wifi direct"
	case device.FoundUSB:
		return "usb"
	}
	return string(e.Transport)
}

// unreachableRows lists the paired devices (pair records) that are not reachable now,
// each with the reason.
func unreachableRows(ctx context.Context, devs *device.Host, listed []device.Entry) []deviceRow {
	seen := map[string]bool{}
	for _, e := range listed {
		seen[strings.ToUpper(e.UDID)] = true
	}
	_, muxErr := device.List(ctx)
	var rows []deviceRow
	for _, udid := range devs.Paired(ctx) {
		if seen[strings.ToUpper(udid)] {
			continue
		}
		rows = append(rows, deviceRow{Entry: device.Entry{UDID: udid},
			Unreachable: device.UnreachableReason(devs.Mode(), muxErr == nil, devs.Learnt(udid), devs.BrowseWait())})
	}
	return rows
}

// daemonHost is the daemon's device Host, from the settings it started with (a change of
// wifi_discovery or pair_records takes effect at the next start). It closes when ctx ends.
func daemonHost(ctx context.Context, env daemonEnv) *device.Host {
	hs := settings.HostSettings{WiFiDiscovery: settings.WiFiAuto}
	if env.Settings != nil {
		hs = env.Settings.Current().Host
	}
	mode, err := device.ParseWiFiDiscovery(string(hs.WiFiDiscovery))
	if err != nil {
		mode = device.WiFiAuto
	}
	cfg := device.HostConfig{WiFi: mode, PairRecordDir: hs.PairRecords, Logger: env.Logger.With("component", "wifi")}
	if dir, err := settings.StateDir(); err == nil {
		cfg.CacheFile = filepath.Join(dir, "wifi-devices.json")
	}
	h := device.NewHost(cfg)
	context.AfterFunc(ctx, func() { h.Close() })
	return h
}
