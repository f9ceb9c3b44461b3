package notify_test

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"snapback/icons"
	"snapback/notify"
)

const childEnv = "SNAPBACK_NOTIFY_DBUS_CHILD"

// runUnderSessionBus re-executes the named test inside a private D-Bus session, so the real
// beeep → godbus → org.freedesktop.Notifications path runs without touching the user's desktop.
// It returns true in the child, where the test body should run.
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

// notification is one Notify call as the server saw it.
type notification struct {
	App, Icon, Summary, Body string
	Hints                    map[string]dbus.Variant
	Timeout                  int32
}

// fakeServer is a notification daemon: it owns org.freedesktop.Notifications and records calls.
type fakeServer struct {
	mu   sync.Mutex
	got  []notification
	next uint32
}

func (s *fakeServer) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, notification{app, icon, summary, body, hints, timeout})
	s.next++
	return s.next, nil
}

func (s *fakeServer) GetCapabilities() ([]string, *dbus.Error) {
	return []string{"body", "icon-static"}, nil
}

func (s *fakeServer) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "snapback-test", "snapback", "1", "1.2", nil
}

func (s *fakeServer) CloseNotification(uint32) *dbus.Error { return nil }

func (s *fakeServer) calls() []notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]notification(nil), s.got...)
}

func TestBeeepOnSessionBus(t *testing.T) {
	if !runUnderSessionBus(t, "TestBeeepOnSessionBus") {
		return
	}
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("session bus: %v", err)
	}
	defer conn.Close()
	srv := &fakeServer{}
	if err := conn.Export(srv, "/org/freedesktop/Notifications", "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("claim notifications name: %v %v", reply, err)
	}

	c := &clock{time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	g := notify.NewGate(notify.NewBeeep("Snapback", icons.App(64)), c.now)
	for _, m := range []notify.Message{
		notify.Passcode(anna),
		notify.Done(anna, 2_900_000_000, 4*time.Minute+12*time.Second, notify.USB),
	} {
		if err := g.Notify(m); err != nil {
			t.Fatalf("Notify(%v): %v", m.Kind, err)
		}
	}
	for range 10 {
		if err := g.Notify(notify.Failure(anna, "The iPhone was disconnected", "Reconnect it; Snapback retries within the backup window.")); err != nil {
			t.Fatalf("Notify(failure): %v", err)
		}
		c.advance(10 * time.Minute)
	}

	got := srv.calls()
	want := []struct{ summary, body string }{
		{"Enter your passcode on Anna's iPhone", "Snapback is ready to back up Anna's iPhone. Unlock it and enter your passcode within 3 minutes, or the backup is skipped."},
		{"Anna's iPhone is backed up", "2.9 GB in 4 min 12 s over USB."},
		{"Backup of Anna's iPhone failed", "The iPhone was disconnected. Reconnect it; Snapback retries within the backup window."},
		{"Backup of Anna's iPhone failed", "The iPhone was disconnected. Reconnect it; Snapback retries within the backup window."},
	}
	if len(got) != len(want) {
		t.Fatalf("server got %d notifications, want %d (passcode, completed, and at most two of ten failures): %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Summary != w.summary || got[i].Body != w.body {
			t.Errorf("notification %d = %q / %q, want %q / %q", i, got[i].Summary, got[i].Body, w.summary, w.body)
		}
		if got[i].App != "Snapback" {
			t.Errorf("notification %d app name = %q, want Snapback", i, got[i].App)
		}
		if _, ok := got[i].Hints["image-data"]; !ok {
			t.Errorf("notification %d has no image-data hint (the app icon)", i)
		}
	}
	// The passcode prompt is urgent (critical, with a sound); the others are normal.
	if u, _ := got[0].Hints["urgency"].Value().(byte); u != 2 {
		t.Errorf("passcode urgency = %v, want 2 (critical)", got[0].Hints["urgency"])
	}
	if u, _ := got[1].Hints["urgency"].Value().(byte); u != 1 {
		t.Errorf("completed urgency = %v, want 1 (normal)", got[1].Hints["urgency"])
	}
}
