package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"snapback/internal/testenv"
	"snapback/tray"
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
