package app

import (
	"strings"
	"testing"
	"time"

	"snapback/jobs"
	"snapback/notify"
	"snapback/settings"
)

// TestPushForwarderIgnoresDesktopSwitches: with every desktop notification switched off, the
// push forwarder (AllKinds) still produces each message, since alert channels filter by their
// own events list; the desktop forwarder stays quiet. A failure carries the class's remedy.
func TestPushForwarderIgnoresDesktopSwitches(t *testing.T) {
	s, err := settings.Parse([]byte("notifications: {passcode: false, completed: false, failed: false, disk_missing: false, overdue: false, approval: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	desktop := &Notifications{Settings: func() *settings.Settings { return s }}
	pushFwd := &Notifications{Settings: func() *settings.Settings { return s }, AllKinds: true}
	now := time.Now()
	events := []jobs.Event{
		{Type: jobs.EventPasscodeRequested, UDID: "U", Name: "Anna's iPhone", Time: now},
		{Type: jobs.EventRunFinished, UDID: "U", Name: "Anna's iPhone", Time: now},
		{Type: jobs.EventRunFailed, UDID: "U", Name: "Anna's iPhone", Time: now, Result: jobs.ResultFailed,
			Err: "the device has not finished its setup", Remedy: "finish the setup assistant on the device"},
		{Type: jobs.EventRunFailed, UDID: "U", Name: "Anna's iPhone", Time: now, Result: jobs.ResultDiskMissing},
		{Type: jobs.EventOverdue, UDID: "U", Name: "Anna's iPhone", OverdueDays: 4},
		{Type: jobs.EventApprovalNeeded, UDID: "U", Name: "Anna's iPhone", Approval: &jobs.Approval{Snapshots: 2, Bytes: 10}},
	}
	kinds := []notify.Kind{notify.PasscodeRequested, notify.Completed, notify.Failed, notify.DiskMissing, notify.Overdue, notify.ApprovalNeeded}
	for i, ev := range events {
		if _, ok := desktop.message(ev); ok {
			t.Errorf("%v: the desktop forwarder ignores its switch", ev.Type)
		}
		m, ok := pushFwd.message(ev)
		if !ok || m.Kind != kinds[i] {
			t.Errorf("%v: push forwarder gave %v %v, want %v", ev.Type, m.Kind, ok, kinds[i])
		}
		if !strings.Contains(m.Title+m.Body, "Anna's iPhone") {
			t.Errorf("%v: message does not name the device: %+v", ev.Type, m)
		}
	}
	if m, _ := pushFwd.message(events[2]); !strings.Contains(m.Body, "finish the setup assistant") {
		t.Errorf("failure message lacks the remedy: %q", m.Body)
	}
	if _, ok := pushFwd.message(jobs.Event{Type: jobs.EventRunFailed, UDID: "U", Result: jobs.ResultCancelled}); ok {
		t.Error("a run the user cancelled is announced")
	}
}

// Damage the scrub after a backup found is told by both forwarders, whatever the settings
// switch off (it is not routine news), naming the device and how many files.
func TestDamageFoundIsAlwaysTold(t *testing.T) {
	s, err := settings.Parse([]byte("notifications: {passcode: false, completed: false, failed: false, disk_missing: false, overdue: false, approval: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ev := jobs.Event{Type: jobs.EventDamageFound, UDID: "U", Name: "Anna's iPhone", Damaged: 7}
	for _, n := range []*Notifications{{Settings: func() *settings.Settings { return s }}, {Settings: func() *settings.Settings { return s }, AllKinds: true}} {
		m, ok := n.message(ev)
		if !ok || m.Kind != notify.DamageFound || !strings.Contains(m.Title+m.Body, "Anna's iPhone") || !strings.Contains(m.Body, "7") {
			t.Errorf("AllKinds %v: %+v %v, want a DamageFound message naming the device and 7 files", n.AllKinds, m, ok)
		}
	}
	if eventMask&jobs.EventDamageFound == 0 {
		t.Error("the forwarder does not listen to DamageFound")
	}
}
