package tray

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"snapback/icons"
)

// childEnv marks the copy of the test binary that runs inside dbus-run-session.
const childEnv = "SNAPBACK_TRAY_DBUS_CHILD"

// runUnderSessionBus re-executes the named test inside a private D-Bus session
// (dbus-run-session), because systray is process-global and must talk to a real bus. It
// returns true in the child, where the test body should run.
func runUnderSessionBus(t *testing.T, name string) bool {
	t.Helper()
	if os.Getenv(childEnv) == "1" {
		return true
	}
	runner, err := exec.LookPath("dbus-run-session")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dbus-run-session is required under CI (apt-get install dbus-daemon): %v", err)
		}
		t.Skipf("dbus-run-session not installed: %v", err)
	}
	cmd := exec.Command(runner, "--", os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1", "-test.timeout=90s")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatalf("%s under dbus-run-session: %v", name, err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+name)) {
		t.Fatalf("%s did not run in the child", name)
	}
	return false
}

// fakeWatcher is the panel's side of the protocol: it owns org.kde.StatusNotifierWatcher and
// records which items register.
type fakeWatcher struct{ registered chan [2]string }

func (w *fakeWatcher) RegisterStatusNotifierItem(service string, sender dbus.Sender) *dbus.Error {
	w.registered <- [2]string{string(sender), service}
	return nil
}

func (w *fakeWatcher) RegisterStatusNotifierHost(string) *dbus.Error { return nil }

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
func (r *callRecorder) Pause(on bool)                { r.add(fmt.Sprint("Pause ", on)) }
func (r *callRecorder) ApproveDeletion(u string)     { r.add("ApproveDeletion " + u) }
func (r *callRecorder) OpenBackupFolder(u string)    { r.add("OpenBackupFolder " + u) }
func (r *callRecorder) OpenSnapshot(u, id string)    { r.add("OpenSnapshot " + u + " " + id) }
func (r *callRecorder) ArchiveSnapshot(u, id string) { r.add("ArchiveSnapshot " + u + " " + id) }
func (r *callRecorder) DeleteSnapshot(u, id string)  { r.add("DeleteSnapshot " + u + " " + id) }
func (r *callRecorder) OpenSettings()                { r.add("OpenSettings") }
func (r *callRecorder) ShowLog()                     { r.add("ShowLog") }
func (r *callRecorder) Quit()                        { r.add("Quit") }

// node is one dbusmenu layout entry as a host sees it.
type node struct {
	ID       int32
	Props    map[string]dbus.Variant
	Children []node
}

func (n node) label() string {
	s, _ := n.Props["label"].Value().(string)
	return s
}

func (n node) find(label string) (node, bool) {
	for _, c := range n.Children {
		if c.label() == label {
			return c, true
		}
	}
	return node{}, false
}

func (n node) dump(indent string) string {
	var b strings.Builder
	for _, c := range n.Children {
		if t, _ := c.Props["type"].Value().(string); t == "separator" {
			b.WriteString(indent + "----\n")
			continue
		}
		en, _ := c.Props["enabled"].Value().(bool)
		fmt.Fprintf(&b, "%s[%d] %q enabled=%v\n", indent, c.ID, c.label(), en)
		b.WriteString(c.dump(indent + "  "))
	}
	return b.String()
}

func toNode(v any) node {
	f := v.([]any)
	n := node{ID: f[0].(int32), Props: f[1].(map[string]dbus.Variant)}
	for _, c := range f[2].([]dbus.Variant) {
		n.Children = append(n.Children, toNode(c.Value()))
	}
	return n
}

// host talks to the tray the way a panel does: through the SNI properties and dbusmenu.
type host struct {
	t    *testing.T
	sni  dbus.BusObject
	menu dbus.BusObject
}

func (h host) layout() (uint32, node) {
	h.t.Helper()
	var rev uint32
	var raw struct {
		ID       int32
		Props    map[string]dbus.Variant
		Children []dbus.Variant
	}
	if err := h.menu.Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{}).Store(&rev, &raw); err != nil {
		h.t.Fatalf("GetLayout: %v", err)
	}
	return rev, toNode([]any{raw.ID, raw.Props, raw.Children})
}

// waitFor polls GetLayout until path (labels from the root) exists and check accepts it; hosts
// poll too, and fyne answers the first GetLayout after a reset with depth 1.
func (h host) waitFor(path []string, check func(node) bool) node {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var root node
	for {
		_, root = h.layout()
		n, ok := root, true
		for _, l := range path {
			if n, ok = n.find(l); !ok {
				break
			}
		}
		if ok && (check == nil || check(n)) {
			return n
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("menu never showed %q; menu is:\n%s", path, root.dump(""))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h host) click(n node) {
	h.t.Helper()
	if err := h.menu.Call("com.canonical.dbusmenu.Event", 0, n.ID, "clicked", dbus.MakeVariant(int32(0)), uint32(0)).Err; err != nil {
		h.t.Fatalf("Event(%d, clicked): %v", n.ID, err)
	}
}

func (h host) tooltip() string {
	h.t.Helper()
	v, err := h.sni.GetProperty("org.kde.StatusNotifierItem.ToolTip")
	if err != nil {
		h.t.Fatalf("ToolTip: %v", err)
	}
	var tt struct {
		Name  string
		Icons []struct {
			W, H int32
			Pix  []byte
		}
		Title, Description string
	}
	if err := dbus.Store([]any{v.Value()}, &tt); err != nil {
		h.t.Fatalf("ToolTip %v: %v", v, err)
	}
	return tt.Title
}

type pixmap struct {
	W, H int32
	Pix  []byte
}

func (h host) icon() pixmap {
	h.t.Helper()
	v, err := h.sni.GetProperty("org.kde.StatusNotifierItem.IconPixmap")
	if err != nil {
		h.t.Fatalf("IconPixmap: %v", err)
	}
	var px []pixmap
	if err := dbus.Store([]any{v.Value()}, &px); err != nil || len(px) != 1 {
		h.t.Fatalf("IconPixmap %v: %v", v, err)
	}
	return px[0]
}

// argb is the SNI pixmap a host should receive for an icon: ARGB32, network byte order.
func argb(t *testing.T, s icons.State) pixmap {
	img, err := png.Decode(bytes.NewReader(icons.For(s, icons.Linux)))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	px := pixmap{W: int32(b.Dx()), H: int32(b.Dy())}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			px.Pix = append(px.Pix, byte(a>>8), byte(r>>8), byte(g>>8), byte(bl>>8))
		}
	}
	return px
}

// sameIcon compares pixmaps on what every correct conversion agrees on: size, every alpha
// byte and the colour of opaque pixels. (fyne v1.12.2 takes the low byte of premultiplied
// 16-bit colour, so semi-transparent edge pixels differ slightly from an exact conversion.)
func sameIcon(got, want pixmap) bool {
	if got.W != want.W || got.H != want.H || len(got.Pix) != len(want.Pix) {
		return false
	}
	for i := 0; i < len(want.Pix); i += 4 {
		if got.Pix[i] != want.Pix[i] {
			return false
		}
		if want.Pix[i] == 0xff && !bytes.Equal(got.Pix[i:i+4], want.Pix[i:i+4]) {
			return false
		}
	}
	return true
}

func (h host) waitIcon(s icons.State) {
	h.t.Helper()
	want := argb(h.t, s)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := h.icon()
		if sameIcon(got, want) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("IconPixmap is %dx%d, not the %v icon", got.W, got.H, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h host) waitTooltip(want string) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := h.tooltip()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("ToolTip = %q, want %q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

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
	if !runUnderSessionBus(t, "TestTrayOnSessionBus") {
		return
	}
	watchConn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("session bus: %v", err)
	}
	defer watchConn.Close()
	watcher := &fakeWatcher{registered: make(chan [2]string, 4)}
	if err := watchConn.Export(watcher, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"); err != nil {
		t.Fatal(err)
	}
	if reply, err := watchConn.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("claim watcher name: %v %v", reply, err)
	}

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

	var reg [2]string
	select {
	case reg = <-watcher.registered:
	case <-time.After(10 * time.Second):
		t.Fatal("the tray never called RegisterStatusNotifierItem on the watcher")
	}
	if reg[1] != "/StatusNotifierItem" {
		t.Errorf("registered service %q, want the object path /StatusNotifierItem", reg[1])
	}
	client, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var owner string
	wellKnown := fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", os.Getpid())
	if err := client.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, wellKnown).Store(&owner); err != nil || owner != reg[0] {
		t.Errorf("owner of %s = %q (%v), want the registering connection %q", wellKnown, owner, err, reg[0])
	}
	sni := client.Object(reg[0], "/StatusNotifierItem")
	menuPath, err := sni.GetProperty("org.kde.StatusNotifierItem.Menu")
	if err != nil {
		t.Fatalf("Menu property: %v", err)
	}
	h := host{t: t, sni: sni, menu: client.Object(reg[0], menuPath.Value().(dbus.ObjectPath))}

	// Idle, backed up yesterday.
	h.waitFor([]string{"Anna's iPhone", "Backed up yesterday 15:30"}, nil)
	_, root := h.layout()
	var top []string
	for _, c := range root.Children {
		if c.label() != "" {
			top = append(top, c.label())
		}
	}
	if want := []string{"All devices backed up", "Anna's iPhone", "Pause Automatic Backups", "Open Settings…", "Show Log", "Quit Snapback"}; !slices.Equal(top, want) {
		t.Errorf("top-level labels = %q, want %q\n%s", top, want, root.dump(""))
	}
	if en, _ := root.Children[0].Props["enabled"].Value().(bool); en {
		t.Error("the status line is enabled; it should be informational")
	}
	h.waitIcon(icons.Idle)
	h.waitTooltip("Snapback: All devices backed up\nAnna's iPhone: Backed up yesterday 15:30")

	// Back Up Now reaches the controller.
	h.click(h.waitFor([]string{"Anna's iPhone", "Back Up Now"}, nil))
	expectCall(t, rec, "BackUpNow "+anna)

	// The engine reports progress: labels, icon and tooltip follow, in place.
	states <- dev(func(d *Device) {
		d.Status, d.Progress = BackingUp, Progress{Percent: 42, Done: 1_200_000_000, Total: 2_900_000_000}
	})
	line := h.waitFor([]string{"Anna's iPhone", "Backing up… 42% · 1.2 of 2.9 GB · USB"}, nil)
	h.waitFor([]string{"Backing up Anna's iPhone… 42%"}, nil)
	h.waitIcon(icons.Working)
	h.waitTooltip("Snapback: Backing up Anna's iPhone… 42%\nAnna's iPhone: Backing up… 42% · 1.2 of 2.9 GB · USB")
	states <- dev(func(d *Device) {
		d.Status, d.Progress = BackingUp, Progress{Percent: 77, Done: 2_200_000_000, Total: 2_900_000_000}
	})
	if again := h.waitFor([]string{"Anna's iPhone", "Backing up… 77% · 2.2 of 2.9 GB · USB"}, nil); again.ID != line.ID {
		t.Errorf("progress rebuilt the menu: state line id %d → %d, want updated in place", line.ID, again.ID)
	}
	h.click(h.waitFor([]string{"Anna's iPhone", "Cancel Backup"}, nil))
	expectCall(t, rec, "Cancel "+anna)

	// Done: back to idle, and "Back Up Now" is back in the same entry.
	states <- dev(nil)
	h.waitFor([]string{"Anna's iPhone", "Backed up today 09:12"}, nil)
	h.waitFor([]string{"All devices backed up"}, nil)
	h.waitIcon(icons.Idle)

	// Retention asks: the approval item appears and a click approves.
	states <- dev(func(d *Device) { d.PendingDeletion = &Deletion{Snapshots: 3, Size: 2_100_000_000} })
	h.click(h.waitFor([]string{"Allow deleting 3 old snapshots (2.1 GB)"}, nil))
	expectCall(t, rec, "ApproveDeletion "+anna)
	h.waitIcon(icons.Attention)

	// Checkbox items carry their state and send the new value.
	pause := h.waitFor([]string{"Pause Automatic Backups"}, func(n node) bool {
		tt, _ := n.Props["toggle-type"].Value().(string)
		ts, _ := n.Props["toggle-state"].Value().(int32)
		return tt == "checkmark" && ts == 0
	})
	h.click(pause)
	expectCall(t, rec, "Pause true")
	states <- State{Now: now, Paused: true, Devices: []Device{annaPhone(nil)}}
	h.waitFor([]string{"Pause Automatic Backups"}, func(n node) bool {
		ts, _ := n.Props["toggle-state"].Value().(int32)
		return ts == 1
	})

	// Snapshot actions sit three submenus deep; deleting takes the confirm entry.
	states <- dev(func(d *Device) {
		d.Snapshots, d.SnapshotsSize = []Snapshot{{ID: "20261121-091000", Time: today.AddDate(0, 0, -1), Size: 120_000_000}}, 120_000_000
	})
	h.click(h.waitFor([]string{"Anna's iPhone", "Snapshots (1, 120 MB extra)", "Yesterday 09:12 · 120 MB", "Delete…", "Delete This Snapshot (120 MB)"}, nil))
	expectCall(t, rec, "DeleteSnapshot "+anna+" 20261121-091000")

	// Disabled entries do nothing even if a host sends a click.
	states <- dev(func(d *Device) { d.Connected = false })
	off := h.waitFor([]string{"Anna's iPhone", "Back Up Now"}, func(n node) bool { en, _ := n.Props["enabled"].Value().(bool); return !en })
	h.click(off)

	// Quit ends Run.
	h.click(h.waitFor([]string{"Quit Snapback"}, nil))
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
