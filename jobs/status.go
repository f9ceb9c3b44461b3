package jobs

import (
	"fmt"
	"time"

	"snapback/settings"
)

// DeviceState is what a device is doing, as the tray shows it.
type DeviceState int

// Device states. A device is in exactly one.
const (
	StateIdle            DeviceState = iota // nothing to do (connected or not); see Reason for why
	StateQueued                             // a run waits for a free slot
	StateWaitingPasscode                    // the device shows the passcode prompt; the user must act
	StateBackingUp                          // a run is transferring data
	StateCommitting                         // the run is verifying and committing the snapshot
	StateFailed                             // the last attempt failed (until the next run starts)
	StatePaused                             // automatic backups are paused and nothing runs
)

var stateNames = [...]string{"Idle", "Queued", "WaitingPasscode", "BackingUp", "Committing", "Failed", "Paused"}

func (s DeviceState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("DeviceState(%d)", int(s))
}

// Busy reports whether a run is queued or in progress.
func (s DeviceState) Busy() bool {
	return s == StateQueued || s == StateWaitingPasscode || s == StateBackingUp || s == StateCommitting
}

// DeviceStatus is the tray's view of one device. It is a value; nothing in it is shared.
type DeviceStatus struct {
	UDID string
	Name string // the device's name, or the UDID when unknown

	Connected bool
	Transport settings.Transport // link of the current connection (when Connected)
	Battery   int                // percent, -1 unknown
	Charging  bool

	State DeviceState
	// Manual is set while the queued or running run is a "Back Up Now".
	Manual bool
	// Progress of the running run (State WaitingPasscode, BackingUp or Committing).
	Progress Progress

	LastSuccess time.Time // zero: never
	LastResult  Result
	LastError   string // why the last attempt failed, in words

	// Overdue: no successful backup for notifications.overdue_after_days;
	// OverdueDays counts calendar days since the last success (or first sighting).
	Overdue     bool
	OverdueDays int

	PendingApproval *Approval // permission the user is asked for, if any

	// Reason and ReasonText say why the device is not being backed up right now (from the
	// last schedule decision); NextCheck is when that may change by itself (zero: on an
	// event).
	Reason     Reason
	ReasonText string
	NextCheck  time.Time
}

// Status is the whole app's state for the tray: one immutable snapshot. Get a fresh one from
// Manager.Status or Subscription.Initial, then follow events (or call Status again on each).
type Status struct {
	Paused  bool // automatic backups paused by the user
	Running int  // runs in progress
	Queued  int  // runs waiting for a slot
	// Devices lists every device Snapback knows (connected now, in the settings file or in
	// the run state), sorted by name then UDID.
	Devices []DeviceStatus
	// SettingsError is set while the settings file has a rejected edit (the app runs on the
	// last good settings).
	SettingsError string
}

// Device returns the status of udid.
func (s Status) Device(udid string) (DeviceStatus, bool) {
	for _, d := range s.Devices {
		if d.UDID == udid {
			return d, true
		}
	}
	return DeviceStatus{}, false
}
