package notify_test

import (
	"testing"
	"time"

	"snapback/icons"
	"snapback/notify"
	"snapback/tray/traytest"
)

func TestBeeepOnSessionBus(t *testing.T) {
	// The real beeep → godbus → org.freedesktop.Notifications path, on a private session bus
	// so the user's desktop is never touched.
	if !traytest.RunUnderSessionBus(t, "TestBeeepOnSessionBus", "SNAPBACK_NOTIFY_DBUS_CHILD", "90s") {
		return
	}
	srv := traytest.StartNotifications(t)

	c := &clock{time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	g := notify.NewGate(notify.NewBeeep("Snapback", icons.App(64)), c.now)
	for _, m := range []notify.Message{
		notify.Passcode(anna),
		notify.Done(anna, notify.Run{Sent: 2_900_000_000, Size: 2_900_000_000, Took: 4*time.Minute + 12*time.Second, Via: notify.USB}),
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

	got := srv.Calls()
	want := []struct{ summary, body string }{
		{"Enter your passcode on Anna's iPhone", "Snapback is ready to back up Anna's iPhone. Unlock it and enter your passcode within 3 minutes, or the backup is skipped."},
		{"Anna's iPhone is backed up", "Transferred 2.9 GB in 4 min 12 s over USB. Backup size: 2.9 GB."},
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
