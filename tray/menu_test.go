package tray

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"snapback/icons"
)

var (
	now    = time.Date(2026, 11, 22, 15, 30, 0, 0, time.UTC)
	today  = time.Date(2026, 11, 22, 9, 12, 0, 0, time.UTC)
	gb     = int64(1_000_000_000)
	anna   = "00008030-001A2B3C4D5E802E"
	benUD  = "00008101-000A1B2C3D4E5F60"
	backed = &Backup{Time: today, Size: 2_900_000_000, Transport: USB, IOSVersion: "18.1"}
)

func annaPhone(mod func(*Device)) Device {
	d := Device{UDID: anna, Name: "Anna's iPhone", Connected: true, Transport: USB, Automatic: true, LastBackup: backed}
	if mod != nil {
		mod(&d)
	}
	return d
}

// find returns the item with key, searching submenus.
func find(items []Item, key string) (Item, bool) {
	for _, it := range items {
		if it.Key == key {
			return it, true
		}
		if c, ok := find(it.Children, key); ok {
			return c, true
		}
	}
	return Item{}, false
}

func mustFind(t *testing.T, m Menu, key string) Item {
	t.Helper()
	it, ok := find(m.Items, key)
	if !ok {
		t.Fatalf("no item %q in menu:\n%s", key, dump(m.Items, ""))
	}
	return it
}

func dump(items []Item, indent string) string {
	var b strings.Builder
	for _, it := range items {
		if it.Separator {
			b.WriteString(indent + "----\n")
			continue
		}
		b.WriteString(indent + it.Key + " = " + it.Label + "\n")
		b.WriteString(dump(it.Children, indent+"  "))
	}
	return b.String()
}

func TestBuildLabels(t *testing.T) {
	dev := "device/" + anna + "/"
	tests := []struct {
		name  string
		state State
		icon  icons.State
		want  map[string]string // key → label
	}{
		{
			name:  "all backed up today",
			state: State{Now: now, Devices: []Device{annaPhone(nil)}},
			icon:  icons.Idle,
			want: map[string]string{
				"status":             "All devices backed up",
				"device/" + anna:     "Anna's iPhone",
				dev + "state":        "Backed up today 09:12",
				dev + "run":          "Back Up Now",
				dev + "last":         "Last backup: Today 09:12",
				dev + "last-details": "2.9 GB · USB · iOS 18.1",
				dev + "snapshots":    "No snapshots yet",
				dev + "open":         "Open Backup Folder",
				dev + "auto":         "Automatic Backups",
				dev + "encryption":   "Backups are not encrypted",
				"pause":              "Pause Automatic Backups",
				"settings":           "Open Settings…",
				"log":                "Show Log",
				"quit":               "Quit Snapback",
			},
		},
		{
			name: "backing up over USB",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
				d.Status, d.Progress = BackingUp, Progress{Percent: 42, Done: 1_200_000_000, Total: 2_900_000_000}
			})}},
			icon: icons.Working,
			want: map[string]string{
				"status":      "Backing up Anna's iPhone… 42%",
				dev + "state": "Backing up… 42% · 1.2 of 2.9 GB · USB",
				dev + "run":   "Cancel Backup",
			},
		},
		{
			name: "backing up over Wi-Fi, size unknown",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
				d.Status, d.Transport, d.Progress = BackingUp, WiFi, Progress{Percent: 7}
			})}},
			icon: icons.Working,
			want: map[string]string{dev + "state": "Backing up… 7% · Wi-Fi"},
		},
		{
			name: "backing up, progress unknown",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
				d.Status, d.Transport, d.Progress = BackingUp, TransportUnknown, Progress{Percent: -1}
			})}},
			icon: icons.Working,
			want: map[string]string{"status": "Backing up Anna's iPhone…", dev + "state": "Backing up…"},
		},
		{
			name:  "two devices backing up",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status = BackingUp }), {UDID: benUD, Name: "Ben's iPad", Status: BackingUp, Progress: Progress{Percent: 150}}}},
			icon:  icons.Working,
			want: map[string]string{
				"status":                     "Backing up 2 devices…",
				"device/" + benUD + "/state": "Backing up… 100%",
			},
		},
		{
			name:  "passcode",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status = WaitingPasscode })}},
			icon:  icons.Attention,
			want: map[string]string{
				"status":      "Enter the passcode on Anna's iPhone",
				dev + "state": "Enter the passcode on Anna's iPhone",
				dev + "run":   "Cancel Backup",
			},
		},
		{
			name:  "committing",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status = Committing })}},
			icon:  icons.Working,
			want:  map[string]string{"status": "Finishing backup of Anna's iPhone…", dev + "state": "Finishing backup…", dev + "run": "Cancel Backup"},
		},
		{
			name:  "queued",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status = Queued })}},
			icon:  icons.Idle,
			want:  map[string]string{"status": "Waiting to back up Anna's iPhone", dev + "state": "Waiting to back up"},
		},
		{
			name: "overdue",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
				d.OverdueDays, d.LastBackup = 3, &Backup{Time: now.AddDate(0, 0, -4), Size: 3 * gb, Transport: WiFi}
			})}},
			icon: icons.Attention,
			want: map[string]string{
				"status":             "Anna's iPhone is overdue 3 days",
				dev + "state":        "Overdue 3 days",
				dev + "last":         "Last backup: 18 Nov 15:30",
				dev + "last-details": "3 GB · Wi-Fi",
			},
		},
		{
			name:  "overdue one day",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.OverdueDays = 1 })}},
			icon:  icons.Attention,
			want:  map[string]string{dev + "state": "Overdue 1 day"},
		},
		{
			name:  "disk missing",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.DiskMissing, d.OverdueDays = true, 2 })}},
			icon:  icons.Error,
			want: map[string]string{
				"status":      "Backup disk not connected for Anna's iPhone",
				dev + "state": "Backup disk not connected",
			},
		},
		{
			name:  "failed",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status, d.LastError = Failed, "the iPhone was disconnected" })}},
			icon:  icons.Error,
			want: map[string]string{
				"status":      "Backup of Anna's iPhone failed",
				dev + "state": "Backup failed: the iPhone was disconnected",
				dev + "run":   "Back Up Now",
			},
		},
		{
			name:  "failed without reason",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status = Failed })}},
			icon:  icons.Error,
			want:  map[string]string{dev + "state": "Backup failed"},
		},
		{
			name:  "paused device and app",
			state: State{Now: now, Paused: true, Devices: []Device{annaPhone(func(d *Device) { d.Status = Paused })}},
			icon:  icons.Idle,
			want:  map[string]string{"status": "Automatic backups paused", dev + "state": "Automatic backups paused"},
		},
		{
			name:  "never backed up",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.LastBackup = nil })}},
			icon:  icons.Idle,
			want:  map[string]string{"status": "Anna's iPhone is not backed up yet", dev + "state": "Not backed up yet", dev + "last": "No backup yet"},
		},
		{
			name: "backed up yesterday",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
				d.LastBackup = &Backup{Time: today.AddDate(0, 0, -1).Add(12 * time.Hour), Size: 500_000_000}
			})}},
			icon: icons.Idle,
			want: map[string]string{dev + "state": "Backed up yesterday 21:12", dev + "last": "Last backup: Yesterday 21:12", dev + "last-details": "500 MB"},
		},
		{
			name:  "backed up this week and last year",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.LastBackup = &Backup{Time: time.Date(2026, 11, 18, 8, 5, 0, 0, time.UTC)} }), {UDID: benUD, Name: "Ben's iPad", LastBackup: &Backup{Time: time.Date(2025, 11, 3, 8, 5, 0, 0, time.UTC)}}}},
			icon:  icons.Idle,
			want:  map[string]string{dev + "state": "Backed up on Wednesday 08:05", "device/" + benUD + "/state": "Backed up on 3 Nov 2025", "device/" + benUD + "/last": "Last backup: 3 Nov 2025 08:05"},
		},
		{
			name:  "no devices",
			state: State{Now: now},
			icon:  icons.Idle,
			want:  map[string]string{"status": "No devices yet", "no-devices": "No devices yet: connect an iPhone or iPad with USB"},
		},
		{
			name:  "approval, one device",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.PendingDeletion = &Deletion{Snapshots: 3, Size: 2_100_000_000} })}},
			icon:  icons.Attention,
			want:  map[string]string{"approve/" + anna: "Allow deleting 3 old snapshots (2.1 GB)", "status": "All devices backed up"},
		},
		{
			name:  "approval, two devices",
			state: State{Now: now, Devices: []Device{annaPhone(nil), {UDID: benUD, Name: "Ben's iPad", LastBackup: backed, PendingDeletion: &Deletion{Snapshots: 1, Size: 120_000_000}}}},
			icon:  icons.Attention,
			want:  map[string]string{"approve/" + benUD: "Allow deleting 1 old snapshot of Ben's iPad (120 MB)"},
		},
		{
			name:  "settings broken",
			state: State{Now: now, SettingsProblem: "line 4: unknown key \"windw\"", Devices: []Device{annaPhone(nil)}},
			icon:  icons.Attention,
			want:  map[string]string{"settings-problem": "Settings file has an error: line 4: unknown key \"windw\""},
		},
		{
			name:  "encrypted",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Encrypted = true })}},
			icon:  icons.Idle,
			want:  map[string]string{dev + "encryption": "Backups are encrypted"},
		},
		{
			name: "snapshots",
			state: State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
				d.SnapshotsSize = 1_300_000_000
				d.Snapshots = []Snapshot{
					{ID: "20261121-091000", Time: time.Date(2026, 11, 21, 9, 10, 0, 0, time.UTC), Size: 120_000_000},
					{ID: "20261101-090000", Time: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), Size: 1_180_000_000, Archived: true},
				}
			})}},
			icon: icons.Idle,
			want: map[string]string{
				dev + "snapshots":                                "Snapshots (2, 1.3 GB extra)",
				dev + "snapshots/20261121-091000":                "Yesterday 09:10 · 120 MB",
				dev + "snapshots/20261121-091000/open":           "Open",
				dev + "snapshots/20261121-091000/archive":        "Archive",
				dev + "snapshots/20261121-091000/delete":         "Delete…",
				dev + "snapshots/20261121-091000/delete/confirm": "Delete This Snapshot (120 MB)",
				dev + "snapshots/20261101-090000":                "1 Nov 09:00 · 1.2 GB · archived",
				dev + "snapshots/20261101-090000/archive":        "Archived",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Build(tt.state)
			if m.Icon != tt.icon {
				t.Errorf("Icon = %v, want %v", m.Icon, tt.icon)
			}
			for key, want := range tt.want {
				if got := mustFind(t, m, key).Label; got != want {
					t.Errorf("label of %s = %q, want %q", key, got, want)
				}
			}
			if !reflect.DeepEqual(Build(tt.state), m) {
				t.Error("Build is not deterministic")
			}
		})
	}
}

func TestBuildActionsAndEnabled(t *testing.T) {
	dev := "device/" + anna + "/"
	tests := []struct {
		name     string
		state    State
		key      string
		action   Action
		disabled bool
		checked  bool
	}{
		{"back up now", State{Now: now, Devices: []Device{annaPhone(nil)}}, dev + "run", Action{Verb: VerbBackUpNow, UDID: anna}, false, false},
		{"back up now, not connected", State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Connected = false })}}, dev + "run", Action{Verb: VerbBackUpNow, UDID: anna}, true, false},
		{"back up now, disk missing", State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.DiskMissing = true })}}, dev + "run", Action{Verb: VerbBackUpNow, UDID: anna}, true, false},
		{"cancel while backing up", State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status = BackingUp })}}, dev + "run", Action{Verb: VerbCancel, UDID: anna}, false, false},
		{"cancel while waiting for passcode", State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status = WaitingPasscode })}}, dev + "run", Action{Verb: VerbCancel, UDID: anna}, false, false},
		{"no cancel while committing", State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status = Committing })}}, dev + "run", Action{Verb: VerbCancel, UDID: anna}, true, false},
		{"automatic on: click turns it off", State{Now: now, Devices: []Device{annaPhone(nil)}}, dev + "auto", Action{Verb: VerbSetAutomatic, UDID: anna, On: false}, false, true},
		{"automatic off: click turns it on", State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Automatic = false })}}, dev + "auto", Action{Verb: VerbSetAutomatic, UDID: anna, On: true}, false, false},
		{"pause", State{Now: now}, "pause", Action{Verb: VerbPause, On: true}, false, false},
		{"resume", State{Now: now, Paused: true}, "pause", Action{Verb: VerbPause, On: false}, false, true},
		{"approve", State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.PendingDeletion = &Deletion{Snapshots: 2, Size: 1} })}}, "approve/" + anna, Action{Verb: VerbApproveDeletion, UDID: anna}, false, false},
		{"open folder", State{Now: now, Devices: []Device{annaPhone(nil)}}, dev + "open", Action{Verb: VerbOpenBackupFolder, UDID: anna}, false, false},
		{"status line", State{Now: now}, "status", Action{}, true, false},
		{"settings", State{Now: now}, "settings", Action{Verb: VerbOpenSettings}, false, false},
		{"log", State{Now: now}, "log", Action{Verb: VerbShowLog}, false, false},
		{"status page", State{Now: now, StatusPage: true}, "statuspage", Action{Verb: VerbOpenStatusPage}, false, false},
		{"quit", State{Now: now}, "quit", Action{Verb: VerbQuit}, false, false},
	}
	snaps := State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
		d.Snapshots = []Snapshot{{ID: "s1", Time: today, Size: 5}, {ID: "s2", Time: today, Archived: true}}
	})}}
	sk := dev + "snapshots/"
	tests = append(tests, []struct {
		name     string
		state    State
		key      string
		action   Action
		disabled bool
		checked  bool
	}{
		{"open snapshot", snaps, sk + "s1/open", Action{Verb: VerbOpenSnapshot, UDID: anna, SnapshotID: "s1"}, false, false},
		{"archive snapshot", snaps, sk + "s1/archive", Action{Verb: VerbArchiveSnapshot, UDID: anna, SnapshotID: "s1"}, false, false},
		{"already archived", snaps, sk + "s2/archive", Action{Verb: VerbArchiveSnapshot, UDID: anna, SnapshotID: "s2"}, true, false},
		{"delete needs the confirm item", snaps, sk + "s1/delete", Action{}, false, false},
		{"delete confirm", snaps, sk + "s1/delete/confirm", Action{Verb: VerbDeleteSnapshot, UDID: anna, SnapshotID: "s1"}, false, false},
	}...)
	if _, ok := find(Build(State{Now: now}).Items, "statuspage"); ok {
		t.Error("Open Status Page is offered while the status page is off")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := mustFind(t, Build(tt.state), tt.key)
			if it.Action != tt.action {
				t.Errorf("Action = %+v, want %+v", it.Action, tt.action)
			}
			if it.Disabled != tt.disabled {
				t.Errorf("Disabled = %v, want %v", it.Disabled, tt.disabled)
			}
			if it.Checked != tt.checked {
				t.Errorf("Checked = %v, want %v", it.Checked, tt.checked)
			}
		})
	}
}

func TestBuildOrderAndTooltip(t *testing.T) {
	s := State{Now: now, Devices: []Device{
		annaPhone(func(d *Device) {
			d.Status, d.Progress = BackingUp, Progress{Percent: 42, Done: 1_200_000_000, Total: 2_900_000_000}
		}),
		{UDID: benUD, Name: "Ben's iPad", LastBackup: backed, PendingDeletion: &Deletion{Snapshots: 3, Size: 2_100_000_000}},
	}}
	m := Build(s)
	var top []string
	for _, it := range m.Items {
		if it.Separator {
			top = append(top, "--")
		} else {
			top = append(top, it.Label)
		}
	}
	want := []string{"Backing up Anna's iPhone… 42%", "Allow deleting 3 old snapshots of Ben's iPad (2.1 GB)", "--", "Anna's iPhone", "Ben's iPad", "--",
		"Pause Automatic Backups", "Open Settings…", "Show Log", "--", "Quit Snapback"}
	if !reflect.DeepEqual(top, want) {
		t.Errorf("top level = %q\nwant %q", top, want)
	}
	wantTip := "Snapback: Backing up Anna's iPhone… 42%\nAnna's iPhone: Backing up… 42% · 1.2 of 2.9 GB · USB\nBen's iPad: Backed up today 09:12"
	if m.Tooltip != wantTip {
		t.Errorf("Tooltip = %q\nwant %q", m.Tooltip, wantTip)
	}
	var dev []string
	for _, it := range mustFind(t, m, "device/"+anna).Children {
		if it.Separator {
			dev = append(dev, "--")
		} else {
			dev = append(dev, it.Label)
		}
	}
	wantDev := []string{"Backing up… 42% · 1.2 of 2.9 GB · USB", "Cancel Backup", "--", "Last backup: Today 09:12", "2.9 GB · USB · iOS 18.1",
		"No snapshots yet", "Open Backup Folder", "--", "Automatic Backups", "Backups are not encrypted"}
	if !reflect.DeepEqual(dev, wantDev) {
		t.Errorf("device submenu = %q\nwant %q", dev, wantDev)
	}
}

// Progress ticks must keep the menu's structure so the adapter updates labels in place
// instead of rebuilding open menus; Back Up Now and Cancel share one entry for the same reason.
func TestShapeStableAcrossProgressAndRunState(t *testing.T) {
	base := State{Now: now, Devices: []Device{annaPhone(nil)}}
	running := State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.Status, d.Progress = BackingUp, Progress{Percent: 10} })}}
	later := State{Now: now.Add(time.Minute), Devices: []Device{annaPhone(func(d *Device) { d.Status, d.Progress = BackingUp, Progress{Percent: 77} })}}
	sh := shape(Build(base).Items)
	for _, s := range []State{running, later} {
		if got := shape(Build(s).Items); got != sh {
			t.Errorf("shape changed:\n%s\nwant\n%s", got, sh)
		}
	}
	withApproval := State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.PendingDeletion = &Deletion{Snapshots: 1} })}}
	if shape(Build(withApproval).Items) == sh {
		t.Error("adding the approval item did not change the shape")
	}
}

type recorder struct{ calls []string }

func (r *recorder) add(s string)                   { r.calls = append(r.calls, s) }
func (r *recorder) BackUpNow(u string)             { r.add("BackUpNow " + u) }
func (r *recorder) Cancel(u string)                { r.add("Cancel " + u) }
func (r *recorder) SetAutomatic(u string, on bool) { r.add("SetAutomatic " + u + " " + onOff(on)) }
func (r *recorder) SetWiFiSync(u string, on bool)  { r.add("SetWiFiSync " + u + " " + onOff(on)) }
func (r *recorder) Pause(on bool)                  { r.add("Pause " + onOff(on)) }
func (r *recorder) ApproveDeletion(u string)       { r.add("ApproveDeletion " + u) }
func (r *recorder) OpenBackupFolder(u string)      { r.add("OpenBackupFolder " + u) }
func (r *recorder) OpenSnapshot(u, id string)      { r.add("OpenSnapshot " + u + " " + id) }
func (r *recorder) ArchiveSnapshot(u, id string)   { r.add("ArchiveSnapshot " + u + " " + id) }
func (r *recorder) DeleteSnapshot(u, id string)    { r.add("DeleteSnapshot " + u + " " + id) }
func (r *recorder) OpenSettings()                  { r.add("OpenSettings") }
func (r *recorder) ShowLog()                       { r.add("ShowLog") }
func (r *recorder) OpenStatusPage()                { r.add("OpenStatusPage") }
func (r *recorder) Quit()                          { r.add("Quit") }
func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func TestActionDo(t *testing.T) {
	acts := []Action{
		{Verb: VerbBackUpNow, UDID: "u"}, {Verb: VerbCancel, UDID: "u"}, {Verb: VerbSetAutomatic, UDID: "u", On: true},
		{Verb: VerbPause, On: false}, {Verb: VerbApproveDeletion, UDID: "u"}, {Verb: VerbOpenBackupFolder, UDID: "u"},
		{Verb: VerbOpenSnapshot, UDID: "u", SnapshotID: "s"}, {Verb: VerbArchiveSnapshot, UDID: "u", SnapshotID: "s"},
		{Verb: VerbDeleteSnapshot, UDID: "u", SnapshotID: "s"}, {Verb: VerbOpenSettings}, {Verb: VerbShowLog}, {Verb: VerbSetWiFiSync, UDID: "u", On: true}, {}, {Verb: VerbQuit},
	}
	r := &recorder{}
	for i, a := range acts {
		if quit := a.Do(r); quit != (i == len(acts)-1) {
			t.Errorf("%+v.Do quit = %v", a, quit)
		}
	}
	want := []string{"BackUpNow u", "Cancel u", "SetAutomatic u on", "Pause off", "ApproveDeletion u", "OpenBackupFolder u",
		"OpenSnapshot u s", "ArchiveSnapshot u s", "DeleteSnapshot u s", "OpenSettings", "ShowLog", "SetWiFiSync u on", "Quit"}
	if !reflect.DeepEqual(r.calls, want) {
		t.Errorf("calls = %q\nwant %q", r.calls, want)
	}
}

// TestActionsThatCannotRunAreNotOffered: the menu offers no action the store or the desktop
// would refuse: no Delete for an archived (pinned) snapshot, no Open Backup Folder before the
// first backup, and nothing that opens or changes files while the backup disk is missing.
func TestActionsThatCannotRunAreNotOffered(t *testing.T) {
	dev := "device/" + anna + "/"
	sk := dev + "snapshots/"
	withSnaps := func(mod func(*Device)) State {
		return State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
			d.Snapshots = []Snapshot{{ID: "s1", Time: today, Size: 5}, {ID: "s2", Time: today, Archived: true}}
			if mod != nil {
				mod(d)
			}
		})}}
	}
	m := Build(withSnaps(nil))
	if _, ok := find(m.Items, sk+"s2/delete"); ok {
		t.Errorf("Delete offered for an archived snapshot:\n%s", dump(m.Items, ""))
	}
	if _, ok := find(m.Items, sk+"s2/delete/confirm"); ok {
		t.Error("Delete This Snapshot offered for an archived snapshot")
	}
	mustFind(t, m, sk+"s1/delete/confirm") // a plain snapshot can still be deleted

	m = Build(State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.LastBackup = nil })}})
	if _, ok := find(m.Items, dev+"open"); ok {
		t.Error("Open Backup Folder offered before the first backup")
	}

	m = Build(withSnaps(func(d *Device) { d.DiskMissing = true }))
	for _, key := range []string{dev + "open", sk + "s1/open", sk + "s1/archive"} {
		if it := mustFind(t, m, key); !it.Disabled {
			t.Errorf("%s is enabled while the backup disk is missing", key)
		}
	}
	if _, ok := find(m.Items, sk+"s1/delete"); ok {
		t.Error("Delete offered while the backup disk is missing")
	}
}

// TestWiFiSyncItem: each device has its own "Back Up over Wi-Fi" switch showing the state read
// from the device; clicking it asks for the opposite state of that device. A device whose state
// is unknown gets no switch (nothing to show), and a disconnected one a disabled switch.
func TestWiFiSyncItem(t *testing.T) {
	const ben = "00008101-000A1B2C3D4E5F60"
	s := State{Now: now, Devices: []Device{
		annaPhone(func(d *Device) { d.WiFiSync = WiFiSyncOff }),
		{UDID: ben, Name: "Ben's iPad", Connected: true, Transport: WiFi, WiFiSync: WiFiSyncOn},
	}}
	m := Build(s)
	a := mustFind(t, m, "device/"+anna+"/wifi")
	if a.Label != "Back Up over Wi-Fi" || !a.Checkable || a.Checked || a.Disabled ||
		a.Action != (Action{Verb: VerbSetWiFiSync, UDID: anna, On: true}) {
		t.Errorf("Anna's Wi-Fi item (off) = %+v", a)
	}
	b := mustFind(t, m, "device/"+ben+"/wifi")
	if !b.Checkable || !b.Checked || b.Disabled || b.Action != (Action{Verb: VerbSetWiFiSync, UDID: ben, On: false}) {
		t.Errorf("Ben's Wi-Fi item (on) = %+v", b)
	}
	r := &recorder{}
	b.Action.Do(r)
	if !reflect.DeepEqual(r.calls, []string{"SetWiFiSync " + ben + " off"}) {
		t.Errorf("clicking Ben's checked item called %q", r.calls)
	}

	m = Build(State{Now: now, Devices: []Device{annaPhone(nil)}})
	if it, ok := find(m.Items, "device/"+anna+"/wifi"); ok {
		t.Errorf("a Wi-Fi switch with an unknown state is shown: %+v", it)
	}
	m = Build(State{Now: now, Devices: []Device{annaPhone(func(d *Device) { d.WiFiSync, d.Connected = WiFiSyncOn, false })}})
	if it := mustFind(t, m, "device/"+anna+"/wifi"); !it.Disabled || !it.Checked || it.Tooltip == "" {
		t.Errorf("a disconnected device's Wi-Fi switch = %+v; want disabled, checked, with a tooltip", it)
	}
}
