//go:build linux

package cli

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/icons"
	"snapback/internal/backupfmt"
	"snapback/internal/devicesim"
	"snapback/internal/testenv"
	"snapback/tray/traytest"
)

// lockedBuffer collects a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTrayEndToEnd runs the real `snapback tray` binary on a private D-Bus session (no X)
// against a simulated iPhone, with a fake panel and a fake notification daemon, and uses it as
// a person would: read the menu, click "Back Up Now", watch the menu, tooltip and icon follow
// the run (passcode prompt, backing up, backed up), get the two notifications, find the
// backup on disk, and quit from the menu.
func TestTrayEndToEnd(t *testing.T) {
	if !traytest.RunUnderSessionBus(t, "TestTrayEndToEnd", "SNAPBACK_TRAY_E2E_CHILD", "120s") {
		return
	}
	began := time.Now()
	dir := t.TempDir()
	bin := filepath.Join(dir, "snapback")
	if out, err := exec.Command("go", "build", "-o", bin, "snapback").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Logf("built in %v", time.Since(began).Round(time.Millisecond))

	// The simulated iPhone: small content, the simulated user types the passcode after 1 s.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	simOut := &lockedBuffer{}
	sim := exec.Command(bin, "simulate", "--listen", addr, "--devices", "1", "--files", "50", "--size", "2MB", "--passcode-delay", "1s")
	sim.Stdout, sim.Stderr = simOut, simOut
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Process.Kill(); sim.Wait() })
	if !testenv.Eventually(20*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("simulator never listened on %s:\n%s", addr, simOut.String())
	}
	id := devicesim.DefaultIdentity(0)

	// Private settings: nothing runs by itself, and the battery never holds a run back.
	cfg := filepath.Join(dir, "config", "snapback", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("schedule: {enabled: false}\nconditions: {min_battery: 0}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The desktop's side: a panel and a notification daemon on this session bus.
	watcher := traytest.StartWatcher(t)
	notes := traytest.StartNotifications(t)

	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "XDG_") || k == "DISPLAY" || k == "WAYLAND_DISPLAY" || k == "HOME" || k == "SNAPBACK_CONFIG" || k == "USBMUXD_SOCKET_ADDRESS" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+filepath.Join(dir, "home"), "USBMUXD_SOCKET_ADDRESS="+addr,
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_STATE_HOME="+filepath.Join(dir, "state"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"),
		"XDG_RUNTIME_DIR="+filepath.Join(dir, "run"))
	appOut := &lockedBuffer{}
	app := exec.Command(bin, "tray")
	app.Env, app.Stdout, app.Stderr = env, appOut, appOut
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- app.Wait() }()
	quit := false
	t.Cleanup(func() {
		if !quit {
			app.Process.Kill()
			<-exited
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "state", "snapback", "snapback.log"))
			t.Logf("snapback tray output:\n%s\nsnapback.log:\n%s\nsimulator:\n%s", appOut.String(), log, simOut.String())
		}
	})

	// The item registers with the panel under its own connection.
	reg := watcher.WaitRegistered(t, 15*time.Second)
	if reg.Service != "/StatusNotifierItem" {
		t.Errorf("registered service %q, want the object path /StatusNotifierItem", reg.Service)
	}
	h := traytest.NewHost(t, reg)
	h.Timeout = 20 * time.Second
	t.Logf("registered after %v", time.Since(began).Round(time.Millisecond))

	// The menu, once the device is attached: its submenu with "Back Up Now" enabled.
	const name = "Simulated iPhone 1"
	run := h.WaitFor([]string{name, "Back Up Now"}, traytest.Node.Enabled)
	// The tray adds its items one at a time, each a LayoutUpdated a host may read: wait for
	// the last item of the device's submenu and of the menu before judging the whole.
	present := func(traytest.Node) bool { return true }
	h.WaitFor([]string{name, "Back Up over Wi-Fi"}, present)
	h.WaitFor([]string{"Quit Snapback"}, present)
	_, root := h.Layout()
	t.Logf("menu before the backup:\n%s", root.Dump(""))
	top := root.Labels()
	if want := []string{name, "Pause Automatic Backups", "Open Settings…", "Show Log", "Quit Snapback"}; len(top) < 1 || !slices.Equal(top[1:], want) {
		t.Errorf("top-level labels = %q, want a status line and then %q", top, want)
	}
	if root.Children[0].Enabled() {
		t.Error("the status line is enabled; it should be informational")
	}
	dev, _ := root.Find(name)
	devLabels := dev.Labels()
	// No Open Backup Folder before there is one (actions that cannot run are not offered). The
	// Wi-Fi sync switch is there: its state was read from the device as it attached.
	if want := []string{"Back Up Now", "No backup yet", "No snapshots yet", "Automatic Backups", "Backups are not encrypted", "Back Up over Wi-Fi"}; len(devLabels) < 1 || !slices.Equal(devLabels[1:], want) {
		t.Errorf("%s submenu labels = %q, want a state line and then %q", name, devLabels, want)
	}
	before := h.Tooltip()
	if want := "Snapback: " + top[0] + "\n" + name + ": " + devLabels[0]; before != want {
		t.Errorf("tooltip before the backup = %q, want %q", before, want)
	}
	pix := map[icons.State]traytest.Pixmap{}
	for _, s := range []icons.State{icons.Idle, icons.Working, icons.Attention, icons.Error} {
		pix[s] = traytest.ARGB(t, s)
	}
	iconOf := func() string {
		got := h.Icon()
		for s, want := range pix {
			if traytest.SameIcon(got, want) {
				return s.String()
			}
		}
		return fmt.Sprintf("unknown %dx%d icon", got.W, got.H)
	}
	if ic := iconOf(); ic != icons.Idle.String() {
		t.Errorf("icon before the backup is %s, want %v", ic, icons.Idle)
	}

	// Back Up Now, as a panel sends it; then watch the device's state line, the status line,
	// the tooltip and the icon until the run is over.
	clicked := time.Now()
	h.Click(run)
	type frame struct{ line, status, tooltip, icon string }
	var frames []frame
	var last frame
	// Sample the menu until the run is over: each sample that differs from the last is a frame.
	if !testenv.Eventually(40*time.Second, func() bool {
		_, root = h.Layout()
		var f frame
		if d, ok := root.Find(name); ok && len(d.Children) > 0 {
			f.line = d.Children[0].Label()
		}
		if len(root.Children) > 0 {
			f.status = root.Children[0].Label()
		}
		f.tooltip, f.icon = h.Tooltip(), iconOf()
		if f != last {
			frames = append(frames, f)
			last = f
		}
		return strings.HasPrefix(last.line, "Backed up today ")
	}) {
		t.Fatalf("no \"Backed up today\" 40 s after Back Up Now; seen: %+v\nmenu:\n%s", frames, root.Dump(""))
	}
	took := time.Since(clicked)
	var seq strings.Builder
	for _, f := range frames {
		fmt.Fprintf(&seq, "  %q | %q | %s | %q\n", f.line, f.status, f.icon, f.tooltip)
	}
	t.Logf("after Back Up Now (%v to done), state line | status line | icon | tooltip:\n%s", took.Round(time.Millisecond), seq.String())

	seen := func(what string, match func(frame) bool) {
		t.Helper()
		if !slices.ContainsFunc(frames, match) {
			t.Errorf("never saw %s", what)
		}
	}
	passcode := "Enter the passcode on " + name
	seen("the passcode prompt in the menu, status line and tooltip with the attention icon", func(f frame) bool {
		return f.line == passcode && f.status == passcode && f.icon == icons.Attention.String() &&
			f.tooltip == "Snapback: "+passcode+"\n"+name+": "+passcode
	})
	seen("\"Backing up…\" or \"Finishing backup…\" with the working icon and a matching tooltip", func(f frame) bool {
		return (strings.HasPrefix(f.line, "Backing up…") || f.line == "Finishing backup…") && f.icon == icons.Working.String() &&
			strings.HasSuffix(f.tooltip, "\n"+name+": "+f.line)
	})
	if i := slices.IndexFunc(frames, func(f frame) bool { return f.line == passcode }); i < 0 ||
		slices.IndexFunc(frames[i:], func(f frame) bool { return f.icon == icons.Working.String() }) < 0 {
		t.Error("the working icon did not come after the passcode prompt")
	}
	done := h.WaitFor([]string{name}, nil)
	if last.status != "All devices backed up" || last.icon != icons.Idle.String() ||
		last.tooltip != "Snapback: All devices backed up\n"+name+": "+last.line {
		t.Errorf("after the run: status %q, icon %s, tooltip %q; want all backed up, idle", last.status, last.icon, last.tooltip)
	}
	// (The menu was rebuilt: the submenu gained the last backup's details line.)
	if again, ok := done.Find("Back Up Now"); !ok || !again.Enabled() {
		t.Errorf("after the run \"Back Up Now\" is %+v (found %v), want it back and enabled\n%s", again, ok, root.Dump(""))
	}
	if labels := done.Labels(); !slices.ContainsFunc(labels, func(l string) bool { return strings.HasPrefix(l, "Last backup: Today ") }) ||
		!slices.Contains(labels, "Open Backup Folder") {
		t.Errorf("after the run the submenu is %q, want a \"Last backup: Today …\" line and Open Backup Folder", labels)
	}

	// The notification daemon got the passcode prompt, then the completion, and nothing else.
	testenv.Eventually(5*time.Second, func() bool { return len(notes.Calls()) >= 2 })
	// Watch a little longer: a late, unexpected third notification would show here.
	testenv.Eventually(200*time.Millisecond, func() bool { return len(notes.Calls()) > 2 })
	got := notes.Calls()
	if len(got) != 2 {
		t.Fatalf("notifications = %+v, want the passcode prompt and the completion", got)
	}
	if want := "Snapback is ready to back up " + name + ". Unlock it and enter your passcode within 3 minutes, or the backup is skipped."; got[0].Summary != "Enter your passcode on "+name || got[0].Body != want {
		t.Errorf("first notification %q / %q, want the passcode prompt %q", got[0].Summary, got[0].Body, want)
	}
	if got[1].Summary != name+" is backed up" || !regexp.MustCompile(`^Transferred [0-9.]+ (B|KB|MB) in [0-9]+ s over USB\. Backup size: [0-9.]+ (B|KB|MB)\.$`).MatchString(got[1].Body) {
		t.Errorf("second notification %q / %q, want %q / \"Transferred <bytes> in <n> s over USB. Backup size: <size>.\"", got[1].Summary, got[1].Body, name+" is backed up")
	}
	for i, n := range got {
		if n.App != "Snapback" {
			t.Errorf("notification %d app name = %q, want Snapback", i, n.App)
		}
	}

	// The backup is on disk, complete.
	status := filepath.Join(dir, "data", "snapback", "Backups", id.UDID, "Status.plist")
	if s, err := backupfmt.ReadStatus(status); err != nil || s.SnapshotState != "finished" {
		t.Errorf("%s: %+v, %v; want a finished backup", status, s, err)
	}

	// Quit from the menu ends the process, cleanly.
	h.Click(h.WaitFor([]string{"Quit Snapback"}, nil))
	select {
	case err := <-exited:
		quit = true
		if err != nil {
			t.Errorf("snapback tray exited with %v after Quit, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("snapback tray still runs 20 s after Quit")
	}
	t.Logf("whole test %v (Back Up Now to backed up: %v)", time.Since(began).Round(time.Millisecond), took.Round(time.Millisecond))
}
