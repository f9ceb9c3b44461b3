package app

import (
	"time"

	"snapback/internal/store"
	"snapback/jobs"
	"snapback/settings"
	"snapback/tray"
)

// DeviceBackups is what the tray shows about a device's stored backups.
type DeviceBackups struct {
	Latest    *store.Snapshot  // nil: none yet
	Snapshots []store.Snapshot // earlier complete backups and archives, newest first
	// DiskMissing: the location's disk is not connected.
	DiskMissing bool
}

// TrayState maps the engine's status, the settings and the store's records onto the tray's
// model. It is pure: everything it needs comes in as arguments.
func TrayState(now time.Time, st jobs.Status, cfg *settings.Settings, backups map[string]DeviceBackups) tray.State {
	out := tray.State{Now: now, Paused: st.Paused, SettingsProblem: st.SettingsError, StatusPage: cfg != nil && cfg.HTTP.Listen != ""}
	for _, d := range st.Devices {
		eff := settings.Defaults()
		if cfg != nil {
			eff = cfg.Effective(d.UDID)
		}
		td := tray.Device{
			UDID:      d.UDID,
			Name:      d.Name,
			Status:    trayStatus(d.State),
			Connected: d.Connected,
			Transport: trayTransport(d.Transport),
			LastError: d.LastError,
			Automatic: eff.Schedule.Enabled,
		}
		if d.State.Busy() {
			pct := int(d.Progress.Percent)
			if d.Progress.Percent < 0 {
				pct = -1
			}
			td.Progress = tray.Progress{Percent: pct, Done: d.Progress.Bytes}
		}
		if d.Overdue {
			td.OverdueDays = d.OverdueDays
		}
		b := backups[d.UDID]
		td.DiskMissing = b.DiskMissing || d.LastResult == jobs.ResultDiskMissing
		if b.Latest != nil {
			td.Encrypted = b.Latest.Encrypted
			td.LastBackup = &tray.Backup{Time: b.Latest.Time, Size: b.Latest.TotalSize, IOSVersion: b.Latest.Device.ProductVersion}
			if !d.LastSuccess.IsZero() && d.LastSuccess.After(b.Latest.Time.Add(-time.Minute)) {
				// The run state knows how the latest backup travelled; the record does not.
				td.LastBackup.Transport = trayTransport(d.Transport)
			}
		}
		for _, sn := range b.Snapshots {
			td.Snapshots = append(td.Snapshots, tray.Snapshot{ID: sn.ID, Time: sn.Time, Size: sn.UniqueSize, Archived: sn.Pinned || sn.IsArchive()})
			td.SnapshotsSize += sn.UniqueSize
		}
		if a := d.PendingApproval; a != nil {
			td.PendingDeletion = &tray.Deletion{Snapshots: a.Snapshots, Size: a.Bytes}
		}
		out.Devices = append(out.Devices, td)
	}
	return out
}

// ReadBackups collects the store records the tray shows for one device.
func ReadBackups(st *store.Store, udid string) DeviceBackups {
	var b DeviceBackups
	all, err := st.List(udid)
	if err != nil {
		return b
	}
	for i := len(all) - 1; i >= 0; i-- {
		sn := all[i]
		if sn.Latest {
			latest := sn
			b.Latest = &latest
			continue
		}
		b.Snapshots = append(b.Snapshots, sn)
	}
	return b
}

// trayStatuses maps the manager's device states onto the tray's (anything else: Idle).
var trayStatuses = map[jobs.DeviceState]tray.DeviceStatus{
	jobs.StateQueued: tray.Queued, jobs.StateWaitingPasscode: tray.WaitingPasscode, jobs.StateBackingUp: tray.BackingUp,
	jobs.StateCommitting: tray.Committing, jobs.StateFailed: tray.Failed, jobs.StatePaused: tray.Paused,
}

func trayStatus(s jobs.DeviceState) tray.DeviceStatus {
	if t, ok := trayStatuses[s]; ok {
		return t
	}
	return tray.Idle
}

func trayTransport(t settings.Transport) tray.Transport {
	return viewTransport(t, tray.USB, tray.WiFi, tray.TransportUnknown)
}

// viewTransport maps the settings' transport onto a view's own enum.
func viewTransport[T any](t settings.Transport, usb, wifi, unknown T) T {
	switch t {
	case settings.TransportUSB:
		return usb
	case settings.TransportWiFi:
		return wifi
	}
	return unknown
}
