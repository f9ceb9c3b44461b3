package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapback/internal/failure"
	"snapback/internal/testenv"
	"snapback/tray"
	"snapback/tray/traytest"
)

// quitter stands in for the engine's controller; nothing clicks in these tests (the tray
// package's own D-Bus test covers clicks), so its nil methods are never called.
type quitter struct{ tray.Controller }

const cmdTrayChild = "SNAPBACK_CMD_TRAY_CHILD"

// inSessionBus re-runs the named test in a child under dbus-run-session (systray allows one
// tray per process) and reports whether this is the child.
func inSessionBus(t *testing.T, name string) bool {
	t.Helper()
	if os.Getenv(cmdTrayChild) == "1" {
		return true
	}
	runner := testenv.RequireTool(t, "dbus-run-session")
	cmd := exec.Command(runner, "--", os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), cmdTrayChild+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+name)) {
		t.Fatalf("%s in dbus-run-session: %v", name, err)
	}
	return false
}

// fakeEngine sends one state, then closes its channel when ctx ends (the trayBackend contract).
func fakeEngine(closeEarly bool, started chan<- struct{}) trayBackend {
	return func(ctx context.Context) (tray.Controller, <-chan tray.State, error) {
		states := make(chan tray.State)
		go func() {
			defer close(states)
			states <- tray.State{Now: time.Now()}
			close(started)
			if !closeEarly {
				<-ctx.Done()
			}
		}()
		return quitter{}, states, nil
	}
}

// The engine closing its channel ends the tray, and runTray returns.
func TestRunTrayEndsWhenEngineStops(t *testing.T) {
	if !inSessionBus(t, "TestRunTrayEndsWhenEngineStops") {
		return
	}
	done := make(chan error, 1)
	go func() { done <- runTray(context.Background(), fakeEngine(true, make(chan struct{}))) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("runTray did not return after the engine closed its channel")
	}
}

// SIGTERM ends the tray, cancels the engine's context and waits for it to stop.
func TestRunTrayStopsOnSIGTERM(t *testing.T) {
	if !inSessionBus(t, "TestRunTrayStopsOnSIGTERM") {
		return
	}
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runTray(context.Background(), fakeEngine(false, started)) }()
	// runTray installs its signal handler before it starts the engine, and started closes only
	// once the engine runs: the handler is in place.
	<-started
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("runTray did not return after SIGTERM")
	}
}

// `snapback tray` where no desktop session is (ssh, a server) fails at once with exit 2 and
// one line that names the missing bus and the command to run instead; the engine never
// starts, so nothing is written. systray alone logged the failure and crashed on quit.
func TestTrayCommandWithoutSessionBus(t *testing.T) {
	const name, child = "TestTrayCommandWithoutSessionBus", "SNAPBACK_CMD_TRAY_NOBUS"
	if os.Getenv(child) != "1" {
		// A process of its own: dbus.SessionBus keeps the first connection it makes.
		traytest.RunInChild(t, name, append(os.Environ(), child+"=1", "DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(t.TempDir(), "no-bus")))
		return
	}
	home := t.TempDir()
	t.Setenv("XDG_STATE_HOME", filepath.Join(home, "state"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(home, "run"))
	root := newRootCmd("test")
	root.SetArgs([]string{"tray"})
	var stderr bytes.Buffer
	if code := execute(root, &stderr); code != failure.ExitUsage {
		t.Errorf("exit %d, want %d (usage)", code, failure.ExitUsage)
	}
	msg := stderr.String()
	if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "no D-Bus session bus") || !strings.Contains(msg, "snapback daemon") {
		t.Errorf("stderr = %q; want one line naming the missing session bus and snapback daemon", msg)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("the failed tray wrote %d entries under its home; want none (the engine must not start)", len(entries))
	}
}

// Bare `snapback` (what autostart runs) shows the tray only where a desktop session can show
// it; a display without a session bus (ssh -X) runs the daemon and says why.
func TestTrayOrDaemon(t *testing.T) {
	for _, c := range []struct {
		graphical bool
		hostErr   error
		tray      bool
		why       string
	}{
		{graphical: true, tray: true, why: "desktop session"},
		{graphical: false, why: "no graphical session"},
		{graphical: true, hostErr: errors.New("no D-Bus session bus to show the tray on"), why: "no D-Bus session bus"},
	} {
		tray, why := trayOrDaemon(c.graphical, c.hostErr)
		if tray != c.tray || !strings.Contains(why, c.why) {
			t.Errorf("trayOrDaemon(%v, %v) = %v, %q; want %v and a reason naming %q", c.graphical, c.hostErr, tray, why, c.tray, c.why)
		}
	}
}
