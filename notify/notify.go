// Package notify formats and sends Snapback's desktop notifications: passcode needed, backup
// done, backup failed, disk missing, overdue, approval needed and broken settings. Formatting
// is pure; Gate de-duplicates and rate-limits with an injected clock; Beeep delivers through
// github.com/gen2brain/beeep. Notifications carry no actions (beeep cannot), so every action a
// notification suggests is also in the tray menu.
package notify

import (
	"fmt"
	"snapback/internal/humanize"
	"time"
)

// Notifier delivers a notification. Implementations must be safe for concurrent use.
type Notifier interface {
	Notify(Message) error
}

// Kind is what a notification is about; Gate's policy depends on it.
type Kind int

// The kinds.
const (
	PasscodeRequested Kind = iota
	Completed
	Failed
	DiskMissing
	Overdue
	ApprovalNeeded
	SettingsBroken
	DamageFound
	TrustRequested
	ActionFailed // a command the user chose in the menu could not be carried out
)

var kindNames = [...]string{"passcode-requested", "completed", "failed", "disk-missing", "overdue", "approval-needed", "settings-broken", "damage-found", "trust-requested", "action-failed"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// Message is one notification, ready to show.
type Message struct {
	Kind   Kind
	UDID   string // the device it is about; empty for app-wide messages
	Title  string
	Body   string
	Urgent bool // needs the user within minutes (the passcode prompt)
}

// Device names a device in messages.
type Device struct {
	UDID string
	Name string
}

// Transport is how a backup travelled.
type Transport int

// The transports; TransportUnknown is left out of messages.
const (
	TransportUnknown Transport = iota
	USB
	WiFi
)

// PasscodeTimeout is how long iOS waits for the passcode before it refuses the backup.
const PasscodeTimeout = 3 * time.Minute

// Passcode asks the user to unlock the device and enter the passcode (iOS 16.1+ asks for it on
// every backup).
func Passcode(d Device) Message {
	return Message{Kind: PasscodeRequested, UDID: d.UDID, Urgent: true,
		Title: "Enter your passcode on " + d.Name,
		Body:  fmt.Sprintf("Snapback is ready to back up %s. Unlock it and enter your passcode within %s, or the backup is skipped.", d.Name, minutes(PasscodeTimeout)),
	}
}

// Run is what a finished backup reports for its notification.
type Run struct {
	Sent int64         // bytes the device transferred in this run
	Size int64         // size of the backup now stored
	Took time.Duration // how long the run took
	Via  Transport     // how it travelled
}

// Done reports a successful backup: what was transferred (an incremental backup sends little),
// how long it took and how it travelled, and the size of the backup now stored, each
// labelled so that one is never read as the other.
func Done(d Device, r Run) Message {
	body := fmt.Sprintf("Transferred %s in %s", humanize.Bytes(r.Sent), formatDuration(r.Took))
	switch r.Via {
	case USB:
		body += " over USB"
	case WiFi:
		body += " over Wi-Fi"
	}
	body += ". Backup size: " + humanize.Bytes(r.Size) + "."
	return Message{Kind: Completed, UDID: d.UDID, Title: d.Name + " is backed up", Body: body}
}

// Failure reports a failed backup with its reason and what the user can do about it, both
// short sentences from the engine's error classification ("The iPhone was disconnected.",
// "Reconnect it; Snapback retries within the backup window.").
func Failure(d Device, reason, remedy string) Message {
	body := sentence(reason)
	if remedy != "" {
		body += " " + sentence(remedy)
	}
	return Message{Kind: Failed, UDID: d.UDID, Title: "Backup of " + d.Name + " failed", Body: body}
}

// NoDisk reports that the backup location is on a disk that is not connected.
func NoDisk(d Device, location string) Message {
	return Message{Kind: DiskMissing, UDID: d.UDID, Title: "Backup disk not connected",
		Body: fmt.Sprintf("Connect the disk that holds %s to back up %s. Snapback never writes into an empty mount point.", location, d.Name)}
}

// IsOverdue reports that a device has not been backed up for days.
func IsOverdue(d Device, days int) Message {
	return Message{Kind: Overdue, UDID: d.UDID, Title: fmt.Sprintf("%s was last backed up %s ago", d.Name, plural(days, "day", "days")),
		Body: "Connect it with USB, or keep it on the same Wi-Fi as this computer and unlock it, so Snapback can back it up."}
}

// Approval asks permission to delete old snapshots, as retention is set to ask first.
func Approval(d Device, snapshots int, size int64) Message {
	return Message{Kind: ApprovalNeeded, UDID: d.UDID, Title: "Allow deleting old snapshots?",
		Body: fmt.Sprintf("%s of %s take %s. Choose \u201cAllow deleting\u201d in the Snapback menu to free the space.", plural(snapshots, "old snapshot", "old snapshots"), d.Name, humanize.Bytes(size))}
}

// BrokenSettings reports a settings file that could not be used; the app keeps running on
// the last good settings.
func BrokenSettings(path, problem string) Message {
	return Message{Kind: SettingsBroken, Title: "Snapback settings have an error",
		Body: fmt.Sprintf("%s: %s Snapback keeps using the last good settings until the file is fixed.", path, sentence(problem))}
}

// Damage reports that the daily scrub found stored files whose content changed on disk (bit rot);
// the device can re-send them while it still has them.
func Damage(d Device, files int) Message {
	return Message{Kind: DamageFound, UDID: d.UDID, Title: "Damaged files in the backup of " + d.Name,
		Body: fmt.Sprintf("%s in the stored backup no longer match what the device sent. Back up %s now so the device sends them again.", plural(files, "file", "files"), d.Name)}
}

// CommandFailed reports that a command the user chose (delete a snapshot, open the log)
// could not be carried out: what failed, why, and what to do. Without it a click that does
// nothing leaves the user guessing.
func CommandFailed(what, reason, remedy string) Message {
	body := sentence(capital(reason))
	if remedy != "" {
		body += " " + sentence(capital(remedy))
	}
	return Message{Kind: ActionFailed, Title: "Could not " + what, Body: body}
}

func capital(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	switch s[len(s)-1] {
	case '.', '!', '?':
		return s
	}
	return s + "."
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func minutes(d time.Duration) string { return plural(int(d/time.Minute), "minute", "minutes") }

// formatDuration: "48 s", "4 min 12 s", "1 h 05 min".
func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%d h %02d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
}
