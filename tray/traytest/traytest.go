//go:build linux

// Package traytest is for tests only: it lets a test play the desktop's side of Snapback's
// Linux tray and notifications on a private D-Bus session bus. It holds a re-exec helper that
// runs a test under dbus-run-session, a fake StatusNotifierWatcher (the panel), a
// com.canonical.dbusmenu client with StatusNotifierItem property reads (what a panel shows),
// and a fake org.freedesktop.Notifications server. Production code must not import it.
package traytest

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"snapback/internal/testenv"
)

// RunUnderSessionBus re-executes the named test of the current test binary inside a private
// D-Bus session (dbus-run-session), with childEnv=1 set so the child knows it is the child.
// It returns true in the child, where the test body should run, and false in the parent once
// the child passed (and skips when the child skipped). Without dbus-run-session the test is skipped, or fails under CI=true.
func RunUnderSessionBus(t *testing.T, name, childEnv, timeout string) bool {
	t.Helper()
	if os.Getenv(childEnv) == "1" {
		return true
	}
	runner := testenv.RequireTool(t, "dbus-run-session")
	cmd := exec.Command(runner, "--", os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1", "-test.timeout="+timeout)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatalf("%s under dbus-run-session: %v", name, err)
	}
	if bytes.Contains(out, []byte("--- SKIP: "+name)) {
		t.Skipf("%s skipped in the child (see its output above)", name)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+name)) {
		t.Fatalf("%s did not run in the child", name)
	}
	return false
}

// RunInChild re-executes the named test of the current test binary in a process of its own
// with exactly env as its environment, and fails unless the child passed. Tests of what a
// process does without a session bus need this: godbus keeps one shared connection per
// process, so a bus that is missing or dies must be a whole process's condition.
func RunInChild(t *testing.T, name string, env []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1", "-test.timeout=60s")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+name)) {
		t.Fatalf("%s in a child process: %v\n%s", name, err, out)
	}
}
