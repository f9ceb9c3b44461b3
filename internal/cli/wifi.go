package cli

import (
	"context"
	"log/slog"
	"strings"

	"snapback/internal/app"
	"snapback/internal/device"
)

// deviceHost builds the device Host the settings ask for (wifi_discovery, pair_records;
// app.DeviceHost). A missing settings file means the defaults (auto discovery); a broken
// one is an error naming the problem, because silently falling back could reach devices
// over a path the user turned off.
func deviceHost(log *slog.Logger) (*device.Host, error) {
	s, err := loadSettings()
	if err != nil {
		return nil, err
	}
	return app.DeviceHost(s, log), nil
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
