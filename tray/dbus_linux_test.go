package tray

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"snapback/icons"
	"snapback/internal/testenv"
	"snapback/tray/traytest"
)

type callRecorder struct {
	mu    sync.Mutex
	calls []string
	ch    chan string
}

func (r *callRecorder) add(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
	r.ch <- s
}
func (r *callRecorder) BackUpNow(u string) { r.add("BackUpNow " + u) }
func (r *callRecorder) Cancel(u string)    { r.add("Cancel " + u) }
func (r *callRecorder) SetAutomatic(u string, on bool) {
	r.add(fmt.Sprint("SetAutomatic ", u, " ", on))
}
func (r *callRecorder) SetWiFiSync(u string, on bool) {
	r.add(fmt.Sprint("SetWiFiSync ", u, " ", on))
}
func (r *callRecorder) Pause(on bool)                { r.add(fmt.Sprint("Pause ", on)) }
func (r *callRecorder) ApproveDeletion(u string)     { r.add("ApproveDeletion " + u) }
func (r *callRecorder) OpenBackupFolder(u string)    { r.add("OpenBackupFolder " + u) }
func (r *callRecorder) OpenSnapshot(u, id string)    { r.add("OpenSnapshot " + u + " " + id) }
func (r *callRecorder) ArchiveSnapshot(u, id string) { r.add("ArchiveSnapshot " + u + " " + id) }
func (r *callRecorder) DeleteSnapshot(u, id string)  { r.add("DeleteSnapshot " + u + " " + id) }
func (r *callRecorder) OpenSettings()                { r.add("OpenSettings") }
func (r *callRecorder) ShowLog()                     { r.add("ShowLog") }
func (r *callRecorder) OpenStatusPage()              { r.add("OpenStatusPage") }
func (r *callRecorder) Quit()                        { r.add("Quit") }

func expectCall(t *testing.T, r *callRecorder, want string) {
	t.Helper()
	select {
	case got := <-r.ch:
		if got != want {
			t.Fatalf("controller got %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("controller never got %q", want)
	}
}

// TestTrayOnSessionBus runs the real systray code on a private session bus with a fake panel
// (StatusNotifierWatcher), reads the menu through com.canonical.dbusmenu as a panel does,
// clicks entries and watches labels, tooltip and icon follow the states the engine pushes.
func TestTrayOnSessionBus(t *testing.T) {
	if !traytest.RunUnderSessionBus(t, "TestTrayOnSessionBus", "SNAPBACK_TRAY_DBUS_CHILD", "90s") {
		return
	}
	watcher := traytest.StartWatcher(t)

	rec := &callRecorder{ch: make(chan string, 16)}
	states := make(chan State)
	tr := New(rec, states)
	ran := make(chan struct{})
	go func() { tr.Run(); close(ran) }()

	dev := func(mod func(*Device)) State {
		return State{Now: now, Devices: []Device{annaPhone(mod)}}
	}
	states <- dev(func(d *Device) {
		d.LastBackup = &Backup{Time: now.AddDate(0, 0, -1), Size: 2_900_000_000, Transport: USB, IOSVersion: "18.1"}
	})

	reg := watcher.WaitRegistered(t, 10*time.Second)
	if reg.Service != "/StatusNotifierItem" {
		t.Errorf("registered service %q, want the object path /StatusNotifierItem", reg.Service)
	}
	h := traytest.NewHost(t, reg)
	// KDE keeps an item's settings (shown or hidden) by its Id, which systray reads from the
	// title once, at the export: "systray_<pid>" would be a new item every run.
	for _, p := range []string{"Id", "Title"} {
		if v, err := h.SNI.GetProperty("org.kde.StatusNotifierItem." + p); err != nil || v.Value() != "Snapback" {
			t.Errorf("item %s = %v (%v), want Snapback", p, v, err)
		}
	}
	var owner string
	wellKnown := fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", os.Getpid())
	if err := h.Conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, wellKnown).Store(&owner); err != nil || owner != reg.Sender {
		t.Errorf("owner of %s = %q (%v), want the registering connection %q", wellKnown, owner, err, reg.Sender)
	}

	// Idle, backed up yesterday.
	h.WaitFor([]string{"Anna's iPhone", "Backed up yesterday 15:30"}, nil)
	_, root := h.Layout()
	var top []string
	for _, c := range root.Children {
		if c.Label() != "" {
			top = append(top, c.Label())
		}
	}
	if want := []string{"All devices backed up", "Anna's iPhone", "Pause Automatic Backups", "Open Settings…", "Show Log", "Quit Snapback"}; !slices.Equal(top, want) {
		t.Errorf("top-level labels = %q, want %q\n%s", top, want, root.Dump(""))
	}
	if en, _ := root.Children[0].Props["enabled"].Value().(bool); en {
		t.Error("the status line is enabled; it should be informational")
	}
	h.WaitIcon(icons.Idle)
	h.WaitTooltip("Snapback: All devices backed up\nAnna's iPhone: Backed up yesterday 15:30")

	// Back Up Now reaches the controller.
	h.Click(h.WaitFor([]string{"Anna's iPhone", "Back Up Now"}, nil))
	expectCall(t, rec, "BackUpNow "+anna)

	// The engine reports progress: labels, icon and tooltip follow, in place.
	states <- dev(func(d *Device) {
		d.Status, d.Progress = BackingUp, Progress{Percent: 42, Done: 1_200_000_000, Total: 2_900_000_000}
	})
	line := h.WaitFor([]string{"Anna's iPhone", "Backing up… 42% · 1.2 of 2.9 GB · USB"}, nil)
	h.WaitFor([]string{"Backing up Anna's iPhone… 42%"}, nil)
	h.WaitIcon(icons.Working)
	h.WaitTooltip("Snapback: Backing up Anna's iPhone… 42%\nAnna's iPhone: Backing up… 42% · 1.2 of 2.9 GB · USB")
	states <- dev(func(d *Device) {
		d.Status, d.Progress = BackingUp, Progress{Percent: 77, Done: 2_200_000_000, Total: 2_900_000_000}
	})
	if again := h.WaitFor([]string{"Anna's iPhone", "Backing up… 77% · 2.2 of 2.9 GB · USB"}, nil); again.ID != line.ID {
		t.Errorf("progress rebuilt the menu: state line id %d → %d, want updated in place", line.ID, again.ID)
	}
	h.Click(h.WaitFor([]string{"Anna's iPhone", "Cancel Backup"}, nil))
	expectCall(t, rec, "Cancel "+anna)

	// Done: back to idle, and "Back Up Now" is back in the same entry.
	states <- dev(nil)
	h.WaitFor([]string{"Anna's iPhone", "Backed up today 09:12"}, nil)
	h.WaitFor([]string{"All devices backed up"}, nil)
	h.WaitIcon(icons.Idle)

	// Retention asks: the approval item appears and a click approves.
	states <- dev(func(d *Device) { d.PendingDeletion = &Deletion{Snapshots: 3, Size: 2_100_000_000} })
	h.Click(h.WaitFor([]string{"Allow deleting 3 old snapshots (2.1 GB)"}, nil))
	expectCall(t, rec, "ApproveDeletion "+anna)
	h.WaitIcon(icons.Attention)

	// Checkbox items carry their state and send the new value.
	pause := h.WaitFor([]string{"Pause Automatic Backups"}, func(n traytest.Node) bool {
		tt, _ := n.Props["toggle-type"].Value().(string)
		ts, _ := n.Props["toggle-state"].Value().(int32)
		return tt == "checkmark" && ts == 0
	})
	h.Click(pause)
	expectCall(t, rec, "Pause true")
	states <- State{Now: now, Paused: true, Devices: []Device{annaPhone(nil)}}
	h.WaitFor([]string{"Pause Automatic Backups"}, func(n traytest.Node) bool {
		ts, _ := n.Props["toggle-state"].Value().(int32)
		return ts == 1
	})

	// Snapshot actions sit three submenus deep; deleting takes the confirm entry.
	states <- dev(func(d *Device) {
		d.Snapshots, d.SnapshotsSize = []Snapshot{{ID: "20261121-091000", Time: today.AddDate(0, 0, -1), Size: 120_000_000}}, 120_000_000
	})
	h.Click(h.WaitFor([]string{"Anna's iPhone", "Snapshots (1, 120 MB extra)", "Yesterday 09:12 · 120 MB", "Delete…", "Delete This Snapshot (120 MB)"}, nil))
	expectCall(t, rec, "DeleteSnapshot "+anna+" 20261121-091000")

	// Disabled entries do nothing even if a host sends a click.
	states <- dev(func(d *Device) { d.Connected = false })
	off := h.WaitFor([]string{"Anna's iPhone", "Back Up Now"}, func(n traytest.Node) bool { en, _ := n.Props["enabled"].Value().(bool); return !en })
	h.Click(off)

	// Quit ends Run.
	h.Click(h.WaitFor([]string{"Quit Snapback"}, nil))
	expectCall(t, rec, "Quit")
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Quit")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if n := len(rec.calls); n != 6 {
		t.Errorf("controller calls = %q, want exactly 6 (the disabled click must do nothing)", rec.calls)
	}
}

// TestTrayShowsWhatItSetDuringExport sends the first state the moment the item's bus name
// appears. systray takes that name before it exports the item's properties, and starts
// onReady before either, so the first icon and tooltip are set while the export is under way:
// the window in which systray used to drop them (fyne-io/systray#35; once seen in our CI as a
// tray with no icon). The panel must get both anyway. systray runs once per process, so each
// attempt is a process of its own. Without Tray.republish 10 of 20 attempts failed, so eight
// attempts miss the bug about once in 256 runs.
func TestTrayShowsWhatItSetDuringExport(t *testing.T) {
	const name, child = "TestTrayShowsWhatItSetDuringExport", "SNAPBACK_TRAY_EXPORT_CHILD"
	if os.Getenv(child) != "1" {
		for range 8 {
			traytest.RunUnderSessionBus(t, name, child, "60s")
		}
		return
	}
	watcher := traytest.StartWatcher(t)
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wellKnown := fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", os.Getpid())
	if err := conn.AddMatchSignal(dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, wellKnown)); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 8)
	conn.Signal(signals)

	states := make(chan State)
	tr := New(&callRecorder{ch: make(chan string, 16)}, states)
	ran := make(chan struct{})
	go func() { tr.Run(); close(ran) }()
	defer func() { tr.Quit(); <-ran }()

	// Only the name's arrival counts; the bus also sends this connection NameAcquired.
	for appeared := false; !appeared; {
		select {
		case sig := <-signals:
			if sig.Name == "org.freedesktop.DBus.NameOwnerChanged" && len(sig.Body) == 3 {
				owner, _ := sig.Body[2].(string)
				appeared = owner != ""
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never appeared on the bus", wellKnown)
		}
	}
	states <- State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
		d.LastBackup = &Backup{Time: now.AddDate(0, 0, -1), Size: 2_900_000_000, Transport: USB, IOSVersion: "18.1"}
	})}}
	h := traytest.NewHost(t, watcher.WaitRegistered(t, 10*time.Second))
	// The first state is all this test sends: an icon dropped now would never come back, so a
	// short wait is enough to tell.
	h.Timeout = 3 * time.Second
	h.WaitIcon(icons.Idle)
	h.WaitTooltip("Snapback: All devices backed up\nAnna's iPhone: Backed up yesterday 15:30")
}

// CheckHost runs before the tray starts and says what the desktop lacks: with no session bus
// (ssh, a server) an error naming it, where systray would only log and then crash on quit;
// with a bus but no panel (GNOME without the AppIndicator extension) a note; with a panel,
// nothing.
func TestCheckHostTellsWhatTheDesktopLacks(t *testing.T) {
	const name, child = "TestCheckHostTellsWhatTheDesktopLacks", "SNAPBACK_TRAY_HOST_CHILD"
	switch os.Getenv(child) {
	case "":
		// No bus, in processes of their own: an address that leads nowhere, and none at all
		// (ssh -X), where godbus's shared connection would run dbus-launch and start a bus
		// nobody's panel is on. The dbus-launch put first on PATH records that it ran.
		tmp := t.TempDir()
		ran := filepath.Join(tmp, "dbus-launch ran")
		if err := os.WriteFile(filepath.Join(tmp, "dbus-launch"), []byte("#!/bin/sh\ntouch '"+ran+"'\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "DBUS_SESSION_BUS_ADDRESS=") && !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") && !strings.HasPrefix(kv, "PATH=") {
				env = append(env, kv)
			}
		}
		env = append(env, child+"=nobus", "XDG_RUNTIME_DIR="+tmp, "PATH="+tmp+":"+os.Getenv("PATH"))
		traytest.RunInChild(t, name, append(env, "DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(tmp, "no-bus")))
		traytest.RunInChild(t, name, env)
		if _, err := os.Stat(ran); err == nil {
			t.Error("CheckHost ran dbus-launch: it must find a bus, never start one")
		}
		traytest.RunUnderSessionBus(t, name, child, "60s")
		return
	case "nobus":
		note, err := CheckHost()
		if err == nil || !strings.Contains(err.Error(), "no D-Bus session bus") || note != "" {
			t.Fatalf("CheckHost with no session bus = %q, %v; want an error naming the missing bus", note, err)
		}
		return
	}
	note, err := CheckHost()
	if err != nil || !strings.Contains(note, "no system tray") || !strings.Contains(note, "AppIndicator") {
		t.Errorf("CheckHost with no panel = %q, %v; want a note naming the missing tray and the GNOME extension", note, err)
	}
	traytest.StartWatcher(t)
	if note, err := CheckHost(); note != "" || err != nil {
		t.Errorf("CheckHost with a panel = %q, %v; want nothing to say", note, err)
	}
}

// The tray registers with every panel that appears while it runs: one started after the tray
// (autostart at login can win that race) and one restarted later. The second comes after a
// signal of the kind that ends systray's own re-registration loop (fewer than three
// arguments, like a Secret Service prompt's Completed, which go-keyring subscribes to on the
// session connection it shares with systray).
func TestTrayRegistersWithEachPanel(t *testing.T) {
	if !traytest.RunUnderSessionBus(t, "TestTrayRegistersWithEachPanel", "SNAPBACK_TRAY_PANEL_CHILD", "60s") {
		return
	}
	states := make(chan State, 1)
	tr := New(&callRecorder{ch: make(chan string, 16)}, states)
	ran := make(chan struct{})
	go func() { tr.Run(); close(ran) }()
	defer func() { tr.Quit(); <-ran }()
	states <- State{Now: now, Devices: []Device{annaPhone(func(d *Device) {
		d.LastBackup = &Backup{Time: now.AddDate(0, 0, -1), Size: 2_900_000_000, Transport: USB, IOSVersion: "18.1"}
	})}}

	// A panel that starts after the tray.
	first := traytest.StartWatcher(t)
	reg := first.WaitRegistered(t, 10*time.Second)
	h := traytest.NewHost(t, reg)
	h.WaitIcon(icons.Idle)

	// A short signal on the connection systray shares: what go-keyring's prompt sends.
	shared, err := dbus.SessionBus()
	if err != nil {
		t.Fatal(err)
	}
	if err := shared.AddMatchSignal(dbus.WithMatchInterface("org.snapback.Test"), dbus.WithMatchMember("Completed")); err != nil {
		t.Fatal(err)
	}
	seen := make(chan *dbus.Signal, 8)
	shared.Signal(seen)
	defer shared.RemoveSignal(seen)
	if err := h.Conn.Emit("/org/snapback/Test", "org.snapback.Test.Completed", false); err != nil {
		t.Fatal(err)
	}
	for delivered := false; !delivered; {
		select {
		case sig := <-seen:
			delivered = sig.Name == "org.snapback.Test.Completed"
		case <-time.After(10 * time.Second):
			t.Fatal("the test signal never reached the shared connection")
		}
	}

	// The panel restarts: the item must register with the new one, from the same connection.
	first.Close()
	second := traytest.StartWatcher(t)
	again := second.WaitRegistered(t, 10*time.Second)
	if again.Sender != reg.Sender || again.Service != reg.Service {
		t.Errorf("registered with the new panel as %+v, want %+v", again, reg)
	}
	h2 := traytest.NewHost(t, again)
	h2.WaitIcon(icons.Idle)
}

// When the session bus dies (the desktop session ended, or its bus crashed), the tray ends:
// Run returns, every goroutine with it. Before, the next icon change panicked inside systray
// on the dead connection, and the tray's watch for panels spun on its closed channel.
func TestTrayEndsWithItsSessionBus(t *testing.T) {
	const name, child = "TestTrayEndsWithItsSessionBus", "SNAPBACK_TRAY_BUSDIES_CHILD"
	if os.Getenv(child) == "" {
		daemon := testenv.RequireTool(t, "dbus-daemon")
		sock := filepath.Join(t.TempDir(), "bus")
		bus := exec.Command(daemon, "--session", "--nofork", "--address=unix:path="+sock)
		if err := bus.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Process.Kill(); bus.Wait() })
		testenv.WaitFor(t, 10*time.Second, "the session bus's socket", func() bool { _, err := os.Stat(sock); return err == nil })
		traytest.RunInChild(t, name, append(os.Environ(), child+"="+strconv.Itoa(bus.Process.Pid), "DBUS_SESSION_BUS_ADDRESS=unix:path="+sock))
		return
	}
	daemon, err := strconv.Atoi(os.Getenv(child))
	if err != nil {
		t.Fatal(err)
	}
	watcher := traytest.StartWatcher(t)
	states := make(chan State, 1)
	tr := New(&callRecorder{ch: make(chan string, 16)}, states)
	ran := make(chan error, 1)
	go func() { ran <- tr.Run() }()
	states <- State{Now: now, Devices: []Device{annaPhone(nil)}}
	traytest.NewHost(t, watcher.WaitRegistered(t, 10*time.Second)).WaitIcon(icons.Idle)

	if err := syscall.Kill(daemon, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if !errors.Is(err, ErrSessionGone) {
			t.Errorf("Run = %v, want ErrSessionGone", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the session bus died")
	}
}

// Run without a session bus (CheckHost warns first; this is the race where the bus went in
// between): the tray still takes the engine's states, so the engine never blocks on it, and
// Quit ends it without the panic systray's end has on a missing connection.
func TestTrayRunWithoutABusFollowsAndQuits(t *testing.T) {
	const name, child = "TestTrayRunWithoutABusFollowsAndQuits", "SNAPBACK_TRAY_NOBUS_RUN_CHILD"
	if os.Getenv(child) == "" {
		traytest.RunInChild(t, name, append(os.Environ(), child+"=1", "DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(t.TempDir(), "no-bus")))
		return
	}
	states := make(chan State)
	tr := New(&callRecorder{ch: make(chan string, 16)}, states)
	ran := make(chan error, 1)
	go func() { ran <- tr.Run() }()
	for range 3 {
		select {
		case states <- State{Now: now, Devices: []Device{annaPhone(nil)}}:
		case <-time.After(10 * time.Second):
			t.Fatal("the tray does not take states without a bus")
		}
	}
	tr.Quit()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run after Quit = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Quit")
	}
}
