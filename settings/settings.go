// Package settings holds Snapback's user settings: one YAML file in the OS config folder with
// global defaults and per-device overrides, read through viper into typed, validated structs.
//
// viper is used only inside this package and only through viper.New(); the rest of the app
// sees immutable *Settings values published by a Store. Passwords never go into the file:
// see secrets.go.
package settings

import (
	"fmt"
	"slices"
	"time"
)

// Transport says over which link a device may be backed up.
type Transport string

// Transports a device may be backed up over.
const (
	TransportUSB  Transport = "usb"
	TransportWiFi Transport = "wifi"
	TransportAny  Transport = "any"
)

// Allows reports whether a device connected over link may be backed up under this setting.
// link is TransportUSB or TransportWiFi.
func (t Transport) Allows(link Transport) bool {
	return t == TransportAny || t == link
}

// Encryption says what Snapback does about the device's backup encryption setting.
type Encryption string

// Encryption policies: leave the device as it is, turn encryption on, or turn it off.
const (
	EncryptionKeep Encryption = "keep"
	EncryptionOn   Encryption = "on"
	EncryptionOff  Encryption = "off"
)

// Schedule is when automatic backups run.
type Schedule struct {
	Enabled bool
	// Window is the daily time span (local time) in which automatic backups may start.
	Window Window
	// RetryDelay is the wait after the first failed attempt of a day; it doubles on each
	// further failure (see jobs.Decide).
	RetryDelay time.Duration
	// MaxRetries is how many times a failed automatic backup is retried on the same day.
	MaxRetries int
}

// Snapshots is the snapshot and retention policy.
type Snapshots struct {
	Enabled    bool
	AutoDelete bool
	// MaxExtraPercent: when all snapshots together take more than this percentage of the
	// latest backup's size, the oldest ones older than MinAge are deleted (iMazing: 50).
	MaxExtraPercent int
	MinAge          time.Duration
	AskBeforeDelete bool
	// KeepDaily, KeepWeekly and KeepMonthly are optional (0 = not set) and protect that many
	// snapshots per calendar day, week and month from automatic deletion.
	KeepDaily, KeepWeekly, KeepMonthly int
}

// Conditions must hold for an automatic backup to start.
type Conditions struct {
	MinBattery      int // percent, 0 = any
	RequireCharging bool
}

// Notifications says which desktop notifications are shown.
type Notifications struct {
	Passcode, Completed, Failed, DiskMissing, Overdue, Approval bool
	// OverdueAfterDays raises the overdue signal when a device has had no successful
	// backup for this many days; 0 turns the signal off.
	OverdueAfterDays int
}

// DeviceSettings is the complete, effective configuration of one device (or, with an empty
// UDID, the global defaults). It is a plain value: copies are independent.
type DeviceSettings struct {
	UDID string
	Name string
	// Location is the backup folder that holds <UDID>/ and Snapback.Versions/.
	Location      string
	Transport     Transport
	Schedule      Schedule
	Snapshots     Snapshots
	Encryption    Encryption
	Conditions    Conditions
	Notifications Notifications
	Offsite       Offsite
	// Alerts are the push channels (ntfy, e-mail, webhooks...) beyond the desktop; a device
	// entry's list replaces the global one, like every other key.
	Alerts []Alert
	Pings  Pings
}

// Settings is one validated reading of the settings file. Treat it as immutable: a Store
// publishes a new *Settings on every reload and readers may share the pointer freely.
type Settings struct {
	// Global holds the defaults every device inherits.
	Global DeviceSettings
	// Devices holds the per-device overrides in file order.
	Devices []DeviceOverride
	// Host holds the host-wide keys (wifi_discovery, pair_records).
	Host HostSettings
	// HTTP is the status page server.
	HTTP HTTP
	// Scrub bounds the daily re-reading of stored files (global only); Parse starts it at
	// DefaultScrub().
	Scrub Scrub
}

// DeviceOverride is one entry of the `devices:` list: a UDID, a display name and the
// already-merged settings of that device.
type DeviceOverride struct {
	UDID string
	Name string
	// Effective is Global with this entry's overrides applied.
	Effective DeviceSettings

	set map[string]bool // keys the entry sets itself; Validate reports only those
}

// Defaults returns the built-in settings. Every default lives here and nowhere else.
func Defaults() DeviceSettings {
	return DeviceSettings{
		Location:  DefaultLocation(),
		Transport: TransportAny,
		Schedule: Schedule{
			Enabled:    true,
			Window:     Window{Start: 9 * 60, End: 23 * 60},
			RetryDelay: 15 * time.Minute,
			MaxRetries: 3,
		},
		Snapshots: Snapshots{
			Enabled:         true,
			AutoDelete:      true,
			MaxExtraPercent: 50,
			MinAge:          30 * 24 * time.Hour,
			AskBeforeDelete: true,
		},
		Encryption: EncryptionKeep,
		Conditions: Conditions{MinBattery: 20},
		Notifications: Notifications{
			Passcode: true, Completed: true, Failed: true, DiskMissing: true,
			Overdue: true, Approval: true,
			OverdueAfterDays: 3,
		},
		Offsite: Offsite{
			Schedule: OffsiteAfterCommit,
			Keep:     OffsiteKeep{Daily: 7, Weekly: 4, Monthly: 12},
		},
	}
}

// Effective returns the settings that apply to the device udid: its override entry when the
// file has one, the global defaults otherwise. The result is a copy.
func (s *Settings) Effective(udid string) DeviceSettings {
	for _, d := range s.Devices {
		if d.UDID == udid {
			return d.Effective
		}
	}
	e := s.Global
	e.UDID = udid
	return e
}

// Device returns the override entry for udid, if the file has one.
func (s *Settings) Device(udid string) (DeviceOverride, bool) {
	i := slices.IndexFunc(s.Devices, func(d DeviceOverride) bool { return d.UDID == udid })
	if i < 0 {
		return DeviceOverride{}, false
	}
	return s.Devices[i], true
}

// Window is a daily span of local wall-clock time, in minutes after midnight. End may be
// smaller than Start: the window then crosses midnight (22:00-06:00). End may be 24*60.
type Window struct {
	Start, End int
}

// ParseWindow parses "HH:MM-HH:MM". Start and end must differ; use "00:00-24:00" for the
// whole day.
func ParseWindow(s string) (Window, error) {
	var h1, m1, h2, m2 int
	var rest string
	n, _ := fmt.Sscanf(s, "%d:%d-%d:%d%s", &h1, &m1, &h2, &m2, &rest)
	if n != 4 || !validClock(h1, m1, false) || !validClock(h2, m2, true) {
		return Window{}, fmt.Errorf("%q is not a time window", s)
	}
	w := Window{Start: h1*60 + m1, End: h2*60 + m2}
	if w.Start == w.End {
		return Window{}, fmt.Errorf("%q is empty (start equals end)", s)
	}
	return w, nil
}

func validClock(h, m int, end bool) bool {
	if end && h == 24 && m == 0 {
		return true
	}
	return h >= 0 && h < 24 && m >= 0 && m < 60
}

// CrossesMidnight reports whether the window ends on the next day.
func (w Window) CrossesMidnight() bool { return w.End < w.Start }

// Contains reports whether the wall-clock minute of day m (0..1439) is inside the window.
func (w Window) Contains(m int) bool {
	if w.CrossesMidnight() {
		return m >= w.Start || m < w.End
	}
	return m >= w.Start && m < w.End
}

// String formats the window the way the settings file writes it.
func (w Window) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.Start/60, w.Start%60, w.End/60, w.End%60)
}
