package notify_test

import (
	"errors"
	"testing"
	"time"

	"snapback/notify"
	"snapback/notify/notifytest"
)

var anna = notify.Device{UDID: "00008030-001A2B3C4D5E802E", Name: "Anna's iPhone"}

func TestMessages(t *testing.T) {
	tests := []struct {
		name   string
		m      notify.Message
		kind   notify.Kind
		title  string
		body   string
		urgent bool
	}{
		{"passcode", notify.Passcode(anna), notify.PasscodeRequested,
			"Enter your passcode on Anna's iPhone",
			"Snapback is ready to back up Anna's iPhone. Unlock it and enter your passcode within 3 minutes, or the backup is skipped.", true},
		{"completed over USB", notify.Done(anna, notify.Run{Sent: 2_900_000_000, Size: 2_900_000_000, Took: 4*time.Minute + 12*time.Second, Via: notify.USB}), notify.Completed,
			"Anna's iPhone is backed up", "Transferred 2.9 GB in 4 min 12 s over USB. Backup size: 2.9 GB.", false},
		{"completed over Wi-Fi", notify.Done(anna, notify.Run{Sent: 520_000, Size: 348_000_000, Took: 48 * time.Second, Via: notify.WiFi}), notify.Completed,
			"Anna's iPhone is backed up", "Transferred 520 KB in 48 s over Wi-Fi. Backup size: 348 MB.", false},
		{"completed, long, transport unknown", notify.Done(anna, notify.Run{Sent: 58_000_000_000, Size: 58_100_000_000, Took: 65 * time.Minute}), notify.Completed,
			"Anna's iPhone is backed up", "Transferred 58 GB in 1 h 05 min. Backup size: 58 GB.", false},
		{"failed", notify.Failure(anna, "The iPhone was disconnected", "Reconnect it; Snapback retries within the backup window."), notify.Failed,
			"Backup of Anna's iPhone failed", "The iPhone was disconnected. Reconnect it; Snapback retries within the backup window.", false},
		{"failed without remedy", notify.Failure(anna, "The disk is full.", ""), notify.Failed,
			"Backup of Anna's iPhone failed", "The disk is full.", false},
		{"disk missing", notify.NoDisk(anna, "/media/anna/Backups"), notify.DiskMissing,
			"Backup disk not connected", "Connect the disk that holds /media/anna/Backups to back up Anna's iPhone. Snapback never writes into an empty mount point.", false},
		{"overdue", notify.IsOverdue(anna, 3), notify.Overdue,
			"Anna's iPhone was last backed up 3 days ago", "Connect it with USB, or keep it on the same Wi-Fi as this computer and unlock it, so Snapback can back it up.", false},
		{"approval", notify.Approval(anna, 3, 2_100_000_000), notify.ApprovalNeeded,
			"Allow deleting old snapshots?", "3 old snapshots of Anna's iPhone take 2.1 GB. Choose “Allow deleting” in the Snapback menu to free the space.", false},
		{"settings", notify.BrokenSettings("/home/anna/.config/snapback/config.yaml", `line 4: unknown key "windw"`), notify.SettingsBroken,
			"Snapback settings have an error", `/home/anna/.config/snapback/config.yaml: line 4: unknown key "windw". Snapback keeps using the last good settings until the file is fixed.`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.m.Kind != tt.kind || tt.m.Title != tt.title || tt.m.Body != tt.body || tt.m.Urgent != tt.urgent {
				t.Errorf("got  %v %q %q urgent=%v\nwant %v %q %q urgent=%v", tt.m.Kind, tt.m.Title, tt.m.Body, tt.m.Urgent, tt.kind, tt.title, tt.body, tt.urgent)
			}
		})
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestGateTenFailuresGiveAtMostTwo(t *testing.T) {
	for _, gap := range []time.Duration{0, time.Second, 10 * time.Minute, 2 * time.Hour} {
		rec := &notifytest.Recorder{}
		c := &clock{time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
		g := notify.NewGate(rec, c.now)
		for range 10 {
			if err := g.Notify(notify.Failure(anna, "The iPhone was disconnected", "")); err != nil {
				t.Fatal(err)
			}
			c.advance(gap)
		}
		if n := rec.Count(notify.Failed); n < 1 || n > 2 {
			t.Errorf("gap %v: %d failure notifications, want 1 or 2", gap, n)
		}
	}
}

func TestGatePolicies(t *testing.T) {
	ben := notify.Device{UDID: "ben", Name: "Ben's iPad"}
	c := &clock{time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	rec := &notifytest.Recorder{}
	g := notify.NewGate(rec, c.now)
	send := func(m notify.Message) { _ = g.Notify(m) }

	send(notify.Failure(anna, "a", ""))
	send(notify.Failure(ben, "b", "")) // another device has its own streak
	c.advance(61 * time.Minute)
	send(notify.Failure(anna, "a", "")) // reminder after an hour
	c.advance(5 * time.Hour)
	send(notify.Failure(anna, "a", "")) // streak cap reached
	if n := rec.Count(notify.Failed); n != 3 {
		t.Fatalf("failures shown = %d, want 3 (anna twice, ben once)", n)
	}
	send(notify.Done(anna, notify.Run{Sent: 1, Size: 1, Took: time.Second, Via: notify.USB})) // success ends anna's streak
	send(notify.Failure(anna, "a", ""))
	if n := rec.Count(notify.Failed); n != 4 {
		t.Errorf("after a success the next failure was held back (%d shown)", n)
	}

	send(notify.Passcode(anna))
	send(notify.Passcode(anna)) // the same prompt reported twice
	c.advance(3 * time.Minute)
	send(notify.Passcode(anna)) // the next attempt's prompt
	if n := rec.Count(notify.PasscodeRequested); n != 2 {
		t.Errorf("passcode notifications = %d, want 2", n)
	}

	send(notify.IsOverdue(anna, 2))
	c.advance(time.Hour)
	send(notify.IsOverdue(anna, 2))
	c.advance(20 * time.Hour)
	send(notify.IsOverdue(anna, 3))
	if n := rec.Count(notify.Overdue); n != 2 {
		t.Errorf("overdue notifications = %d, want 2 (daily)", n)
	}

	send(notify.BrokenSettings("p", "x"))
	if g.Allowed(notify.BrokenSettings("p", "y")) {
		t.Error("a second settings problem within the hour would be shown")
	}
	send(notify.BrokenSettings("p", "y"))
	g.SettingsFixed()
	send(notify.BrokenSettings("p", "z"))
	if n := rec.Count(notify.SettingsBroken); n != 2 {
		t.Errorf("settings notifications = %d, want 2 (one held back, then fixed)", n)
	}
}

func TestGateClockJumpBack(t *testing.T) {
	c := &clock{time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	rec := &notifytest.Recorder{}
	g := notify.NewGate(rec, c.now)
	_ = g.Notify(notify.IsOverdue(anna, 2))
	c.advance(-48 * time.Hour)
	_ = g.Notify(notify.IsOverdue(anna, 2))
	if n := rec.Count(notify.Overdue); n != 2 {
		t.Errorf("after the clock jumped back, overdue shown %d times, want 2", n)
	}
}

func TestGatePassesErrorsAndHeldBackIsNotAnError(t *testing.T) {
	c := &clock{time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	boom := errors.New("no notification server")
	rec := &notifytest.Recorder{Err: boom}
	g := notify.NewGate(rec, c.now)
	if err := g.Notify(notify.Failure(anna, "a", "")); !errors.Is(err, boom) {
		t.Errorf("first Notify error = %v, want %v", err, boom)
	}
	if err := g.Notify(notify.Failure(anna, "a", "")); err != nil {
		t.Errorf("held-back Notify error = %v, want nil", err)
	}
	if got := len(rec.Messages()); got != 1 {
		t.Errorf("recorded %d messages, want 1", got)
	}
}
