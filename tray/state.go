// Package tray is Snapback's menu-bar / system-tray view. Build turns a State (what the engine
// reports) into a Menu model: a pure function, table-tested. Tray binds that model to
// fyne.io/systray and forwards clicks to a Controller. The tray holds no business logic and does
// no I/O of its own: it never touches devices, snapshots or settings files.
package tray

import (
	"fmt"
	"time"
)

// State is everything the menu shows. The engine (jobs) publishes it; the composition root maps
// the engine's status snapshot onto it. A State is a value: the tray never mutates one it got.
type State struct {
	// Now is the wall-clock time the snapshot was taken. Build formats "today 09:12" against it
	// (in Now's location), so Build stays a pure function.
	Now time.Time
	// Devices in display order (the engine decides the order; by name is a good default).
	Devices []Device
	// Paused is true while automatic backups are paused for every device ("Pause Automatic
	// Backups" is checked). Manual "Back Up Now" still works.
	Paused bool
	// SettingsProblem is non-empty when the settings file is broken and the app runs on the
	// last good settings; it is a short, user-facing description ("line 12: unknown key …").
	SettingsProblem string
	// StatusPage is true when the status page is on (http.listen): the menu offers to open it.
	StatusPage bool
}

// Device is one iPhone or iPad known to Snapback.
type Device struct {
	UDID string // identity passed back in every command
	Name string // user-visible name, "Anna's iPhone"

	Status DeviceStatus
	// Progress of the running backup; meaningful while Status is BackingUp or Committing.
	Progress Progress
	// Connected is true while the device is reachable (USB or Wi-Fi); Transport says how.
	// "Back Up Now" is only enabled for a connected device.
	Connected bool
	Transport Transport
	// DiskMissing is true when the device's backup location is on a volume that is not
	// mounted (or is not the expected volume); backups cannot run until it is connected.
	DiskMissing bool
	// LastError is a short, user-facing reason for the last failed run ("the iPhone was
	// disconnected"); shown while Status is Failed.
	LastError string
	// OverdueDays is how many days the device has gone without a successful backup beyond
	// its schedule; 0 means not overdue. The engine computes it from the schedule.
	OverdueDays int

	Automatic bool // automatic (scheduled) backups are on for this device
	Encrypted bool // the device's backups are encrypted

	// LastBackup describes the latest complete backup; nil means there is none yet.
	LastBackup *Backup
	// Snapshots are the earlier complete backups, newest first. SnapshotsSize is the extra
	// space they hold beyond the latest backup (shared bytes counted once).
	Snapshots     []Snapshot
	SnapshotsSize int64
	// PendingDeletion is non-nil when retention wants to delete old snapshots and the
	// settings say to ask first; the menu then offers "Allow deleting …".
	PendingDeletion *Deletion
}

// DeviceStatus is what the engine is doing with a device. It mirrors the engine's enum.
type DeviceStatus int

// The device statuses.
const (
	Idle            DeviceStatus = iota // nothing running
	Queued                              // a backup will start when a slot is free
	WaitingPasscode                     // the device asks the user to enter the passcode
	BackingUp                           // data is being transferred
	Committing                          // transfer done; verifying and committing the snapshot
	Failed                              // the last run failed (see LastError); nothing running now
	Paused                              // automatic backups are paused for this device
)

var statusNames = [...]string{"idle", "queued", "waiting-passcode", "backing-up", "committing", "failed", "paused"}

func (s DeviceStatus) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return fmt.Sprintf("DeviceStatus(%d)", int(s))
	}
	return statusNames[s]
}

// Transport is how a device is (or was) connected.
type Transport int

// The transports. TransportUnknown renders as nothing.
const (
	TransportUnknown Transport = iota
	USB
	WiFi
)

func (t Transport) String() string {
	switch t {
	case USB:
		return "USB"
	case WiFi:
		return "Wi-Fi"
	}
	return ""
}

// Progress of a running backup.
type Progress struct {
	// Percent is 0–100 as the device reports it; negative means unknown (left out of labels).
	Percent int
	// Done and Total are bytes transferred and expected; Total 0 means unknown and the
	// byte counts are left out of the label.
	Done, Total int64
}

// Backup describes a complete backup.
type Backup struct {
	Time       time.Time
	Size       int64 // bytes of the backup folder
	Transport  Transport
	IOSVersion string // "18.1"; empty if unknown
}

// Snapshot is one earlier complete backup.
type Snapshot struct {
	ID       string    // opaque to the tray; passed back in snapshot commands
	Time     time.Time // when the backup finished
	Size     int64     // extra space this snapshot alone holds
	Archived bool      // already archived (pinned); Archive is then disabled
}

// Deletion is retention's pending request to delete old snapshots.
type Deletion struct {
	Snapshots int   // how many
	Size      int64 // bytes freed
}
