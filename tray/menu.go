package tray

import (
	"fmt"
	"strings"
	"time"

	"snapback/icons"
	"snapback/internal/humanize"
)

// Controller receives the user's intents from the menu. The tray defines it (the consumer owns
// the interface); the composition root implements it on top of the engine. Methods are called
// from the tray's click goroutines and should return quickly: start the work, report its
// progress through the next State. Errors are reported the same way, or by notification.
type Controller interface {
	BackUpNow(udid string)
	Cancel(udid string)
	SetAutomatic(udid string, on bool)
	// SetWiFiSync switches the device's Wi-Fi sync (lockdown EnableWifiConnections) on or off.
	SetWiFiSync(udid string, on bool)
	Pause(on bool)
	ApproveDeletion(udid string)
	OpenBackupFolder(udid string)
	OpenSnapshot(udid, id string)
	ArchiveSnapshot(udid, id string)
	DeleteSnapshot(udid, id string)
	OpenSettings()
	ShowLog()
	// OpenStatusPage opens the status page (http.listen) in the browser, logged in.
	OpenStatusPage()
	// Quit asks the app to shut down. The tray ends its own loop after Quit returns.
	Quit()
}

// Verb is the kind of command a menu item issues.
type Verb int

// The verbs, one per Controller method. NoVerb marks informational items.
const (
	NoVerb Verb = iota
	VerbBackUpNow
	VerbCancel
	VerbSetAutomatic
	VerbPause
	VerbApproveDeletion
	VerbOpenBackupFolder
	VerbOpenSnapshot
	VerbArchiveSnapshot
	VerbDeleteSnapshot
	VerbOpenSettings
	VerbShowLog
	VerbQuit
	VerbOpenStatusPage
	VerbSetWiFiSync
)

// Action is the command a click issues, with its arguments. It is a value so that tests can
// compare it and so that a click always runs the action of the latest menu model.
type Action struct {
	Verb       Verb
	UDID       string
	SnapshotID string
	On         bool // for SetAutomatic, SetWiFiSync and Pause: the new value
}

// Do sends the action to c. It reports whether the action was Quit.
func (a Action) Do(c Controller) (quit bool) {
	switch a.Verb {
	case VerbBackUpNow:
		c.BackUpNow(a.UDID)
	case VerbCancel:
		c.Cancel(a.UDID)
	case VerbSetAutomatic:
		c.SetAutomatic(a.UDID, a.On)
	case VerbSetWiFiSync:
		c.SetWiFiSync(a.UDID, a.On)
	case VerbPause:
		c.Pause(a.On)
	case VerbApproveDeletion:
		c.ApproveDeletion(a.UDID)
	case VerbOpenBackupFolder:
		c.OpenBackupFolder(a.UDID)
	case VerbOpenSnapshot:
		c.OpenSnapshot(a.UDID, a.SnapshotID)
	case VerbArchiveSnapshot:
		c.ArchiveSnapshot(a.UDID, a.SnapshotID)
	case VerbDeleteSnapshot:
		c.DeleteSnapshot(a.UDID, a.SnapshotID)
	case VerbOpenSettings:
		c.OpenSettings()
	case VerbShowLog:
		c.ShowLog()
	case VerbOpenStatusPage:
		c.OpenStatusPage()
	case VerbQuit:
		c.Quit()
		return true
	}
	return false
}

// Menu is the whole tray model: icon, tooltip and items.
type Menu struct {
	Icon    icons.State
	Tooltip string
	Items   []Item
}

// Item is one menu entry. Key identifies the entry across builds ("device/<udid>/run"): the
// adapter updates an entry in place when only labels, enabled or checked states changed, and
// rebuilds the menu when the set of keys changes. Keys never depend on labels.
type Item struct {
	Key       string
	Label     string
	Tooltip   string
	Separator bool // a separator line; other fields are ignored
	Disabled  bool // greyed out; informational lines are disabled
	Checkable bool // shows a checkmark box; Checked is its state
	Checked   bool
	Action    Action
	Children  []Item // a submenu when non-empty
}

// Build renders state s as a menu. It is pure: the same State always gives the same Menu.
func Build(s State) Menu {
	status := summary(s)
	m := Menu{Icon: iconState(s), Tooltip: tooltip(s, status)}
	m.Items = append(m.Items, Item{Key: "status", Label: status, Disabled: true})
	if s.SettingsProblem != "" {
		m.Items = append(m.Items, Item{Key: "settings-problem", Label: "Settings file has an error: " + s.SettingsProblem, Disabled: true,
			Tooltip: "Snapback keeps using the last good settings until the file is fixed"})
	}
	for _, d := range s.Devices {
		if d.PendingDeletion == nil {
			continue
		}
		label := fmt.Sprintf("Allow deleting %s (%s)", plural(d.PendingDeletion.Snapshots, "old snapshot", "old snapshots"), humanize.Bytes(d.PendingDeletion.Size))
		if len(s.Devices) > 1 {
			label = fmt.Sprintf("Allow deleting %s of %s (%s)", plural(d.PendingDeletion.Snapshots, "old snapshot", "old snapshots"), d.Name, humanize.Bytes(d.PendingDeletion.Size))
		}
		m.Items = append(m.Items, Item{Key: "approve/" + d.UDID, Label: label, Action: Action{Verb: VerbApproveDeletion, UDID: d.UDID},
			Tooltip: "Retention wants to free space; nothing is deleted until you allow it"})
	}
	m.Items = append(m.Items, Item{Key: "sep/devices", Separator: true})
	if len(s.Devices) == 0 {
		m.Items = append(m.Items, Item{Key: "no-devices", Label: "No devices yet: connect an iPhone or iPad with USB", Disabled: true})
	}
	for _, d := range s.Devices {
		m.Items = append(m.Items, deviceMenu(s, d))
	}
	m.Items = append(m.Items,
		Item{Key: "sep/app", Separator: true},
		Item{Key: "pause", Label: "Pause Automatic Backups", Checkable: true, Checked: s.Paused, Action: Action{Verb: VerbPause, On: !s.Paused}},
		Item{Key: "settings", Label: "Open Settings…", Action: Action{Verb: VerbOpenSettings}},
		Item{Key: "log", Label: "Show Log", Action: Action{Verb: VerbShowLog}},
	)
	if s.StatusPage {
		m.Items = append(m.Items, Item{Key: "statuspage", Label: "Open Status Page", Action: Action{Verb: VerbOpenStatusPage}})
	}
	m.Items = append(m.Items,
		Item{Key: "sep/quit", Separator: true},
		Item{Key: "quit", Label: "Quit Snapback", Action: Action{Verb: VerbQuit}},
	)
	return m
}

func deviceMenu(s State, d Device) Item {
	k := "device/" + d.UDID + "/"
	kids := []Item{{Key: k + "state", Label: deviceLine(s.Now, d), Disabled: true}}
	if d.Status == BackingUp || d.Status == Queued || d.Status == WaitingPasscode || d.Status == Committing {
		// Committing is short and must not be interrupted half-way, so Cancel is shown but disabled.
		kids = append(kids, Item{Key: k + "run", Label: "Cancel Backup", Disabled: d.Status == Committing, Action: Action{Verb: VerbCancel, UDID: d.UDID}})
	} else {
		run := Item{Key: k + "run", Label: "Back Up Now", Action: Action{Verb: VerbBackUpNow, UDID: d.UDID}}
		switch {
		case d.DiskMissing:
			run.Disabled, run.Tooltip = true, "Connect the backup disk first"
		case !d.Connected:
			run.Disabled, run.Tooltip = true, "Connect "+d.Name+" with USB or Wi-Fi first"
		}
		kids = append(kids, run)
	}
	kids = append(kids, Item{Key: k + "sep/last", Separator: true})
	if b := d.LastBackup; b != nil {
		kids = append(kids, Item{Key: k + "last", Label: "Last backup: " + formatDate(s.Now, b.Time), Disabled: true})
		details := []string{humanize.Bytes(b.Size)}
		if t := b.Transport.String(); t != "" {
			details = append(details, t)
		}
		if b.IOSVersion != "" {
			details = append(details, "iOS "+b.IOSVersion)
		}
		kids = append(kids, Item{Key: k + "last-details", Label: strings.Join(details, " · "), Disabled: true})
	} else {
		kids = append(kids, Item{Key: k + "last", Label: "No backup yet", Disabled: true})
	}
	kids = append(kids, snapshotsMenu(s.Now, d))
	enc := "Backups are not encrypted"
	if d.Encrypted {
		enc = "Backups are encrypted"
	}
	// Actions that cannot run are not offered: a folder that does not exist yet, or is on a
	// disk that is not connected, cannot be opened.
	if d.LastBackup != nil {
		open := Item{Key: k + "open", Label: "Open Backup Folder", Action: Action{Verb: VerbOpenBackupFolder, UDID: d.UDID}}
		if d.DiskMissing {
			open.Disabled, open.Tooltip = true, "Connect the backup disk first"
		}
		kids = append(kids, open)
	}
	kids = append(kids,
		Item{Key: k + "sep/options", Separator: true},
		Item{Key: k + "auto", Label: "Automatic Backups", Checkable: true, Checked: d.Automatic, Action: Action{Verb: VerbSetAutomatic, UDID: d.UDID, On: !d.Automatic}},
		Item{Key: k + "encryption", Label: enc, Disabled: true},
	)
	if wifi := wifiItem(k, d); wifi != nil {
		kids = append(kids, *wifi)
	}
	return Item{Key: "device/" + d.UDID, Label: d.Name, Children: kids}
}

// wifiItem is the device's Wi-Fi sync switch, or nil while its state is unknown (the device has
// not been read since Snapback started, or does not trust this computer yet). Switching needs
// the device connected; a Wi-Fi-only device can still switch it off, which ends its Wi-Fi link.
func wifiItem(k string, d Device) *Item {
	if d.WiFiSync == WiFiSyncUnknown {
		return nil
	}
	on := d.WiFiSync == WiFiSyncOn
	it := Item{Key: k + "wifi", Label: "Back Up over Wi-Fi", Checkable: true, Checked: on,
		Action:  Action{Verb: VerbSetWiFiSync, UDID: d.UDID, On: !on},
		Tooltip: "The device accepts backups over Wi-Fi when on the same network (Finder's \"Show this iPhone when on Wi-Fi\")"}
	if !d.Connected {
		it.Disabled, it.Tooltip = true, "Connect "+d.Name+" to change this"
	}
	return &it
}

func snapshotsMenu(now time.Time, d Device) Item {
	k := "device/" + d.UDID + "/snapshots"
	if len(d.Snapshots) == 0 {
		return Item{Key: k, Label: "No snapshots yet", Disabled: true}
	}
	it := Item{Key: k, Label: fmt.Sprintf("Snapshots (%d, %s extra)", len(d.Snapshots), humanize.Bytes(d.SnapshotsSize))}
	for _, sn := range d.Snapshots {
		sk := k + "/" + sn.ID
		label := formatDate(now, sn.Time) + " · " + humanize.Bytes(sn.Size)
		archive := Item{Key: sk + "/archive", Label: "Archive", Action: Action{Verb: VerbArchiveSnapshot, UDID: d.UDID, SnapshotID: sn.ID},
			Tooltip: "Keep this backup for good; archived backups are never deleted automatically"}
		if sn.Archived {
			label += " · archived"
			archive.Label, archive.Disabled = "Archived", true
		}
		open := Item{Key: sk + "/open", Label: "Open", Action: Action{Verb: VerbOpenSnapshot, UDID: d.UDID, SnapshotID: sn.ID}}
		if d.DiskMissing {
			open.Disabled, open.Tooltip = true, "Connect the backup disk first"
			archive.Disabled = true
		}
		kids := []Item{open, archive}
		// An archived (pinned) snapshot is kept for good and the store refuses to delete it,
		// so Delete is not offered. Deleting takes a second, deliberate click in a submenu:
		// a tray has no dialogs.
		if !sn.Archived && !d.DiskMissing {
			kids = append(kids, Item{Key: sk + "/delete", Label: "Delete…", Children: []Item{
				{Key: sk + "/delete/confirm", Label: "Delete This Snapshot (" + humanize.Bytes(sn.Size) + ")",
					Action: Action{Verb: VerbDeleteSnapshot, UDID: d.UDID, SnapshotID: sn.ID}},
			}})
		}
		it.Children = append(it.Children, Item{Key: sk, Label: label, Children: kids})
	}
	return it
}

// deviceLine is the one-line state of a device, most urgent condition first.
func deviceLine(now time.Time, d Device) string {
	switch d.Status {
	case WaitingPasscode:
		return "Enter the passcode on " + d.Name
	case BackingUp:
		parts := []string{"Backing up…" + percent(d.Progress.Percent)}
		if d.Progress.Total > 0 {
			parts = append(parts, humanize.BytesOf(d.Progress.Done, d.Progress.Total))
		}
		if t := d.Transport.String(); t != "" {
			parts = append(parts, t)
		}
		return strings.Join(parts, " · ")
	case Committing:
		return "Finishing backup…"
	case Queued:
		return "Waiting to back up"
	}
	switch {
	case d.DiskMissing:
		return "Backup disk not connected"
	case d.Status == Failed:
		if d.LastError != "" {
			return "Backup failed: " + d.LastError
		}
		return "Backup failed"
	case d.OverdueDays > 0:
		return "Overdue " + plural(d.OverdueDays, "day", "days")
	case d.Status == Paused:
		return "Automatic backups paused"
	case d.LastBackup == nil:
		return "Not backed up yet"
	}
	return "Backed up " + formatWhen(now, d.LastBackup.Time)
}

// summary is the top status line: the most urgent thing across devices.
func summary(s State) string {
	first := func(ok func(Device) bool) (Device, int) {
		var found Device
		n := 0
		for _, d := range s.Devices {
			if ok(d) {
				if n == 0 {
					found = d
				}
				n++
			}
		}
		return found, n
	}
	if d, n := first(func(d Device) bool { return d.Status == WaitingPasscode }); n > 0 {
		return "Enter the passcode on " + d.Name
	}
	if d, n := first(func(d Device) bool { return d.Status == BackingUp }); n == 1 {
		return "Backing up " + d.Name + "…" + percent(d.Progress.Percent)
	} else if n > 1 {
		return fmt.Sprintf("Backing up %d devices…", n)
	}
	if d, n := first(func(d Device) bool { return d.Status == Committing }); n > 0 {
		return "Finishing backup of " + d.Name + "…"
	}
	if d, n := first(func(d Device) bool { return d.DiskMissing }); n > 0 {
		return "Backup disk not connected for " + d.Name
	}
	if d, n := first(func(d Device) bool { return d.Status == Failed }); n > 0 {
		return "Backup of " + d.Name + " failed"
	}
	if d, n := first(func(d Device) bool { return d.OverdueDays > 0 }); n > 0 {
		return d.Name + " is overdue " + plural(d.OverdueDays, "day", "days")
	}
	if d, n := first(func(d Device) bool { return d.Status == Queued }); n > 0 {
		return "Waiting to back up " + d.Name
	}
	if s.Paused {
		return "Automatic backups paused"
	}
	if len(s.Devices) == 0 {
		return "No devices yet"
	}
	if d, n := first(func(d Device) bool { return d.LastBackup == nil }); n > 0 {
		return d.Name + " is not backed up yet"
	}
	return "All devices backed up"
}

// iconState picks the icon: a passcode prompt needs the user now, then running work, then
// failures, then things the user should look at when convenient.
func iconState(s State) icons.State {
	has := func(ok func(Device) bool) bool {
		for _, d := range s.Devices {
			if ok(d) {
				return true
			}
		}
		return false
	}
	switch {
	case has(func(d Device) bool { return d.Status == WaitingPasscode }):
		return icons.Attention
	case has(func(d Device) bool { return d.Status == BackingUp || d.Status == Committing }):
		return icons.Working
	case has(func(d Device) bool { return d.Status == Failed || d.DiskMissing }):
		return icons.Error
	case s.SettingsProblem != "" || has(func(d Device) bool { return d.PendingDeletion != nil || d.OverdueDays > 0 }):
		return icons.Attention
	}
	return icons.Idle
}

func tooltip(s State, status string) string {
	lines := []string{"Snapback: " + status}
	for _, d := range s.Devices {
		lines = append(lines, d.Name+": "+deviceLine(s.Now, d))
	}
	return strings.Join(lines, "\n")
}

// percent is " 42%", or "" when the device has not reported progress (negative).
func percent(p int) string {
	if p < 0 {
		return ""
	}
	return fmt.Sprintf(" %d%%", min(100, p))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// formatWhen renders a past time relative to now: "today 09:12", "yesterday 21:40",
// "on Monday 09:12" within a week, else "on 3 Nov" / "on 3 Nov 2025".
func formatWhen(now, t time.Time) string {
	t = t.In(now.Location())
	days := dayNumber(now) - dayNumber(t)
	switch {
	case days == 0:
		return "today " + t.Format("15:04")
	case days == 1:
		return "yesterday " + t.Format("15:04")
	case days > 1 && days < 7:
		return "on " + t.Format("Monday 15:04")
	case t.Year() == now.Year():
		return "on " + t.Format("2 Jan")
	}
	return "on " + t.Format("2 Jan 2006")
}

// formatDate is the absolute form used in details and snapshot lists: "Today 09:12",
// "Yesterday 21:40", "20 Nov 09:10", "3 Nov 2025 09:10".
func formatDate(now, t time.Time) string {
	t = t.In(now.Location())
	switch days := dayNumber(now) - dayNumber(t); {
	case days == 0:
		return "Today " + t.Format("15:04")
	case days == 1:
		return "Yesterday " + t.Format("15:04")
	case t.Year() == now.Year():
		return t.Format("2 Jan 15:04")
	}
	return t.Format("2 Jan 2006 15:04")
}

// dayNumber counts calendar days in t's own location, so "today" follows the user's clock
// across DST changes.
func dayNumber(t time.Time) int {
	y, m, d := t.Date()
	return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}
