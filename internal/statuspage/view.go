// Package statuspage serves Snapback's status page, its JSON API and Prometheus metrics over
// HTTP: devices with their connection, last backup, next due time and why, run progress,
// snapshot history with sizes, recent failures with remedies, and the actions Back Up Now,
// Cancel and Approve deletion.
//
// The page is rendered on the server with no JavaScript and refreshes itself, so it works on a
// phone. Reads are open on loopback; every action needs the token and passes a same-origin
// check; an address other than loopback needs the token for everything.
//
// The package sees the app only through the interfaces below (Source, Actions), which the app
// layer implements; it imports no store, device or engine.
package statuspage

import (
	"context"
	"time"
)

// Source gives the current state to show. It is called on every request, so it must be cheap
// or cached by the implementation.
type Source interface {
	View(ctx context.Context) View
}

// Actions carries out the page's buttons. Each returns quickly; the work runs elsewhere.
type Actions interface {
	BackUpNow(ctx context.Context, udid string) error
	Cancel(ctx context.Context, udid string) error
	ApproveDeletion(ctx context.Context, udid string) error
}

// View is everything the page, the JSON API and the metrics show, at one moment.
type View struct {
	Now             time.Time `json:"now"`
	Paused          bool      `json:"paused"`
	SettingsProblem string    `json:"settings_problem,omitempty"`
	Devices         []Device  `json:"devices"`
	// Alerts names the configured push channels, redacted (no tokens or passwords).
	Alerts []string `json:"alerts,omitempty"`
}

// Device is one device's status.
type Device struct {
	UDID      string `json:"udid"`
	Name      string `json:"name"`
	Connected bool   `json:"connected"`
	Transport string `json:"transport,omitempty"` // "USB", "Wi-Fi" or "" (while connected)
	// State is what the device is doing, in words ("Idle", "Backing up", ...); Busy while a
	// run is queued or in progress.
	State    string    `json:"state"`
	Busy     bool      `json:"busy"`
	Progress *Progress `json:"progress,omitempty"`

	LastBackup *Backup `json:"last_backup,omitempty"`
	// NextDue is when the schedule looks again (zero: on the next event, e.g. the device
	// connecting); NextWhy says why it is not backing up now.
	NextDue time.Time `json:"next_due,omitzero"`
	NextWhy string    `json:"next_why,omitempty"`

	Snapshots     []Snapshot `json:"snapshots"`
	SnapshotsSize int64      `json:"snapshots_size"`
	// Failures are the recent failed attempts, newest first.
	Failures        []Failure `json:"failures,omitempty"`
	PendingDeletion *Deletion `json:"pending_deletion,omitempty"`
	Overdue         bool      `json:"overdue,omitempty"`

	// For the metrics (since the app started, apart from LastSuccess).
	LastSuccess      time.Time      `json:"last_success,omitzero"`
	LastRunDuration  time.Duration  `json:"last_run_duration_ns,omitempty"`
	LastRunBytes     int64          `json:"last_run_bytes,omitempty"`
	BytesTransferred int64          `json:"bytes_transferred"`
	FailuresByClass  map[string]int `json:"failures_by_class,omitempty"`
}

// Progress of a running backup.
type Progress struct {
	Phase   string `json:"phase"`
	Percent int    `json:"percent"` // -1: unknown
	Bytes   int64  `json:"bytes"`
	Files   int    `json:"files"`
}

// Backup is the latest complete backup.
type Backup struct {
	Time       time.Time `json:"time"`
	Size       int64     `json:"size"`
	IOSVersion string    `json:"ios_version,omitempty"`
	Encrypted  bool      `json:"encrypted"`
}

// Snapshot is one earlier backup; Size is what it alone holds.
type Snapshot struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Size     int64     `json:"size"`
	Archived bool      `json:"archived,omitempty"`
}

// Failure is one failed attempt with what to do about it.
type Failure struct {
	Time    time.Time `json:"time"`
	Class   string    `json:"class"`
	Message string    `json:"message"`
	Remedy  string    `json:"remedy,omitempty"`
}

// Deletion is retention's request to delete snapshots.
type Deletion struct {
	Snapshots int   `json:"snapshots"`
	Bytes     int64 `json:"bytes"`
}
