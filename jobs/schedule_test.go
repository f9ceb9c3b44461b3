package jobs

import (
	"testing"
	"time"

	"snapback/settings"
)

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatalf("tzdata: %v", err)
	}
	return loc
}

func baseSettings() settings.DeviceSettings {
	s := settings.Defaults()
	s.UDID = "U1"
	s.Schedule.Window = settings.Window{Start: 9 * 60, End: 23 * 60}
	s.Schedule.RetryDelay = 15 * time.Minute
	s.Schedule.MaxRetries = 3
	s.Conditions = settings.Conditions{MinBattery: 20}
	s.Notifications.OverdueAfterDays = 3
	return s
}

var usb = Presence{Connected: true, Transport: settings.TransportUSB, Battery: 80}

func TestDecide(t *testing.T) {
	loc := berlin(t)
	at := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, loc) }
	day := func(hh, mm int) time.Time { return at(2026, 6, 10, hh, mm) }
	crossing := func(s *settings.DeviceSettings) { s.Schedule.Window = settings.Window{Start: 22 * 60, End: 6 * 60} }
	night := func(s *settings.DeviceSettings) { s.Schedule.Window = settings.Window{Start: 2 * 60, End: 3 * 60} }
	allDay := func(s *settings.DeviceSettings) { s.Schedule.Window = settings.Window{Start: 0, End: 24 * 60} }

	cases := []struct {
		name   string
		now    time.Time
		mod    func(*settings.DeviceSettings)
		run    RunState
		dev    Presence
		paused bool
		want   Reason
		next   time.Time // checked when not zero
	}{
		// Window edges: start inclusive, end exclusive.
		{name: "before window", now: day(8, 59), dev: usb, want: ReasonOutsideWindow, next: day(9, 0)},
		{name: "window opens", now: day(9, 0), dev: usb, want: ReasonDue},
		{name: "last minute", now: day(22, 59), dev: usb, want: ReasonDue},
		{name: "window closed", now: day(23, 0), dev: usb, want: ReasonOutsideWindow, next: at(2026, 6, 11, 9, 0)},

		// Windows crossing midnight.
		{name: "crossing: before", now: day(21, 59), mod: crossing, dev: usb, want: ReasonOutsideWindow, next: day(22, 0)},
		{name: "crossing: evening", now: day(22, 0), mod: crossing, dev: usb, want: ReasonDue},
		{name: "crossing: after midnight", now: day(0, 30), mod: crossing, dev: usb, want: ReasonDue},
		{name: "crossing: last minute", now: day(5, 59), mod: crossing, dev: usb, want: ReasonDue},
		{name: "crossing: closed", now: day(6, 0), mod: crossing, dev: usb, want: ReasonOutsideWindow, next: day(22, 0)},
		{name: "crossing: done before midnight counts after it", now: day(1, 0), mod: crossing, dev: usb,
			run: RunState{LastSuccess: at(2026, 6, 9, 23, 0)}, want: ReasonDoneToday, next: day(22, 0)},
		{name: "crossing: after-midnight success belongs to the evening before", now: day(22, 30), mod: crossing, dev: usb,
			run: RunState{LastSuccess: day(3, 0)}, want: ReasonDue},
		{name: "crossing: manual in the afternoon counts for that night", now: day(23, 0), mod: crossing, dev: usb,
			run: RunState{LastSuccess: day(15, 0), LastSuccessManual: true}, want: ReasonDoneToday},

		// A manual run counts as the day's backup, even before the window opens.
		{name: "manual this morning", now: day(10, 0), dev: usb,
			run: RunState{LastSuccess: day(7, 30), LastSuccessManual: true}, want: ReasonDoneToday, next: at(2026, 6, 11, 9, 0)},
		{name: "manual late yesterday", now: day(9, 0), dev: usb,
			run: RunState{LastSuccess: at(2026, 6, 9, 23, 50), LastSuccessManual: true}, want: ReasonDue},

		// A broken link: at once when the device left and came back, after one retry delay
		// when it stayed listed all along.
		{name: "link broke, device came back", now: day(10, 5), dev: Presence{Connected: true, Transport: settings.TransportUSB, Battery: -1, Since: day(10, 3)},
			run: RunState{LastAttempt: day(10, 0), LastResult: ResultDeviceGone}, want: ReasonDue},
		{name: "link broke, device never left", now: day(10, 5), dev: Presence{Connected: true, Transport: settings.TransportUSB, Battery: -1, Since: day(9, 30)},
			run: RunState{LastAttempt: day(10, 0), LastResult: ResultDeviceGone}, want: ReasonRetryWait, next: day(10, 15)},
		{name: "link broke, device never left, delay over", now: day(10, 15), dev: Presence{Connected: true, Transport: settings.TransportUSB, Battery: -1, Since: day(9, 30)},
			run: RunState{LastAttempt: day(10, 0), LastResult: ResultDeviceGone}, want: ReasonDue},

		// Cancel tapped on the device's passcode prompt: no automatic retry that day.
		{name: "declined on the device", now: day(14, 0), dev: usb,
			run:  RunState{LastAttempt: day(10, 0), LastResult: ResultDeclined, Failures: []time.Time{day(10, 0)}},
			want: ReasonDeclined, next: at(2026, 6, 11, 9, 0)},
		{name: "declined yesterday", now: day(10, 0), dev: usb,
			run:  RunState{LastAttempt: at(2026, 6, 9, 10, 0), LastResult: ResultDeclined, Failures: []time.Time{at(2026, 6, 9, 10, 0)}},
			want: ReasonDue},

		// Retries: growing delay, limited per day.
		{name: "retry wait 1", now: day(10, 10), dev: usb, run: RunState{Failures: []time.Time{day(10, 0)}}, want: ReasonRetryWait, next: day(10, 15)},
		{name: "retry after 1", now: day(10, 15), dev: usb, run: RunState{Failures: []time.Time{day(10, 0)}}, want: ReasonDue},
		{name: "retry wait 2 doubles", now: day(10, 40), dev: usb, run: RunState{Failures: []time.Time{day(10, 0), day(10, 15)}}, want: ReasonRetryWait, next: day(10, 45)},
		{name: "retry wait 3 doubles again", now: day(11, 0), dev: usb, run: RunState{Failures: []time.Time{day(10, 0), day(10, 15), day(10, 45)}}, want: ReasonRetryWait, next: day(11, 45)},
		{name: "retries used up", now: day(14, 0), dev: usb, run: RunState{Failures: []time.Time{day(10, 0), day(10, 15), day(10, 45), day(11, 45)}},
			want: ReasonRetriesExhausted, next: at(2026, 6, 11, 9, 0)},
		{name: "yesterday's failures do not count", now: day(9, 0), dev: usb,
			run: RunState{Failures: []time.Time{at(2026, 6, 9, 10, 0), at(2026, 6, 9, 11, 0), at(2026, 6, 9, 12, 0), at(2026, 6, 9, 13, 0)}}, want: ReasonDue},
		{name: "no retries allowed", now: day(12, 0), dev: usb, mod: func(s *settings.DeviceSettings) { s.Schedule.MaxRetries = 0 },
			run: RunState{Failures: []time.Time{day(10, 0)}}, want: ReasonRetriesExhausted},

		// Device presence, transport, conditions.
		{name: "device absent", now: day(12, 0), want: ReasonNotConnected},
		{name: "device appears mid-window", now: day(12, 1), dev: usb, want: ReasonDue},
		{name: "wifi only, on usb", now: day(12, 0), dev: usb, mod: func(s *settings.DeviceSettings) { s.Transport = settings.TransportWiFi }, want: ReasonTransport},
		{name: "usb only, on usb", now: day(12, 0), dev: usb, mod: func(s *settings.DeviceSettings) { s.Transport = settings.TransportUSB }, want: ReasonDue},
		{name: "battery low", now: day(12, 0), dev: Presence{Connected: true, Transport: settings.TransportWiFi, Battery: 10}, want: ReasonBatteryLow},
		{name: "battery low but charging", now: day(12, 0), dev: Presence{Connected: true, Transport: settings.TransportWiFi, Battery: 10, Charging: true}, want: ReasonDue},
		{name: "battery unknown", now: day(12, 0), dev: Presence{Connected: true, Transport: settings.TransportWiFi, Battery: -1}, want: ReasonDue},
		{name: "needs charging", now: day(12, 0), dev: usb, mod: func(s *settings.DeviceSettings) { s.Conditions.RequireCharging = true }, want: ReasonNotCharging},
		{name: "paused", now: day(12, 0), dev: usb, paused: true, want: ReasonPaused},
		{name: "disabled", now: day(12, 0), dev: usb, mod: func(s *settings.DeviceSettings) { s.Schedule.Enabled = false }, want: ReasonDisabled},

		// Midnight and DST (Europe/Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00).
		{name: "new calendar day at midnight", now: at(2026, 3, 29, 0, 0), mod: allDay, dev: usb,
			run: RunState{LastSuccess: at(2026, 3, 28, 23, 59)}, want: ReasonDue},
		{name: "day after spring forward is still one day", now: at(2026, 3, 29, 9, 0), dev: usb,
			run: RunState{LastSuccess: at(2026, 3, 28, 22, 30)}, want: ReasonDue},
		{name: "skipped hour: window does not occur", now: at(2026, 3, 29, 1, 59), mod: night, dev: usb, want: ReasonOutsideWindow},
		{name: "skipped hour: after the jump", now: at(2026, 3, 29, 3, 0), mod: night, dev: usb, want: ReasonOutsideWindow, next: at(2026, 3, 30, 2, 0)},
		{name: "repeated hour: first pass due", now: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC).In(loc), mod: night, dev: usb, want: ReasonDue},
		{name: "repeated hour: second pass done", now: time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC).In(loc), mod: night, dev: usb,
			run: RunState{LastSuccess: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)}, want: ReasonDoneToday},
		{name: "retry delay spans the fall-back hour in real time", now: time.Date(2026, 10, 25, 1, 10, 0, 0, time.UTC).In(loc), mod: night, dev: usb,
			run: RunState{Failures: []time.Time{time.Date(2026, 10, 25, 0, 50, 0, 0, time.UTC)}}, want: ReasonDue},

		// Wall-clock jumps (laptop slept).
		{name: "slept through the retry delay", now: day(15, 0), dev: usb, run: RunState{Failures: []time.Time{day(10, 0)}}, want: ReasonDue},
		{name: "slept past the window end", now: day(23, 30), dev: usb, run: RunState{Failures: []time.Time{day(22, 50)}}, want: ReasonOutsideWindow},
		{name: "clock went back: wait at most one delay", now: day(11, 0), dev: usb, run: RunState{Failures: []time.Time{day(12, 0)}},
			want: ReasonRetryWait, next: day(11, 15)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseSettings()
			if c.mod != nil {
				c.mod(&s)
			}
			d := Decide(Input{Now: c.now, Settings: s, Run: c.run, Device: c.dev, Paused: c.paused})
			if d.Reason != c.want || d.Due != (c.want == ReasonDue) {
				t.Fatalf("got %v (%q), want %v", d.Reason, d.Text, c.want)
			}
			if !c.next.IsZero() && !d.NextCheck.Equal(c.next) {
				t.Fatalf("next check %v, want %v", d.NextCheck, c.next)
			}
			if d.Text == "" {
				t.Fatal("no text")
			}
		})
	}
}

func TestSpringForwardWindowOpensAfterTheJump(t *testing.T) {
	loc := berlin(t)
	s := baseSettings()
	s.Schedule.Window = settings.Window{Start: 2*60 + 30, End: 4 * 60}
	// 02:30 does not exist on 2026-03-29; the window opens at 03:00 CEST, right after the jump.
	d := Decide(Input{Now: time.Date(2026, 3, 29, 1, 0, 0, 0, loc), Settings: s, Device: usb})
	if want := time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC); !d.NextCheck.Equal(want) {
		t.Fatalf("next %v, want %v", d.NextCheck, want.In(loc))
	}
	if d := Decide(Input{Now: time.Date(2026, 3, 29, 3, 0, 0, 0, loc), Settings: s, Device: usb}); !d.Due {
		t.Fatalf("03:00 CEST: %v", d.Reason)
	}
}

func TestPasscodeNotEnteredCountsAsFailedAttempt(t *testing.T) {
	loc := berlin(t)
	var rec DeviceRecord
	start := time.Date(2026, 6, 10, 10, 0, 0, 0, loc)
	rec.recordResult(ResultPasscodeTimeout, false, start, start.Add(2*time.Minute), "passcode not entered")
	d := Decide(Input{Now: start.Add(5 * time.Minute), Settings: baseSettings(), Run: rec.RunState, Device: usb})
	if d.Reason != ReasonRetryWait {
		t.Fatalf("got %v", d.Reason)
	}
	rec.recordResult(ResultSuccess, true, start.Add(30*time.Minute), start.Add(40*time.Minute), "")
	if len(rec.Failures) != 0 || rec.ConsecutiveFailures != 0 || !rec.LastSuccessManual {
		t.Fatalf("success does not reset: %+v", rec)
	}
}

func TestOverdue(t *testing.T) {
	loc := berlin(t)
	now := time.Date(2026, 6, 10, 8, 0, 0, 0, loc)
	cases := []struct {
		run   RunState
		after int
		want  bool
		days  int
	}{
		{RunState{LastSuccess: time.Date(2026, 6, 7, 23, 0, 0, 0, loc)}, 3, true, 3},
		{RunState{LastSuccess: time.Date(2026, 6, 8, 0, 1, 0, 0, loc)}, 3, false, 2},
		{RunState{FirstSeen: time.Date(2026, 6, 5, 12, 0, 0, 0, loc)}, 3, true, 5},
		{RunState{}, 3, false, 0},
		{RunState{LastSuccess: time.Date(2026, 5, 1, 12, 0, 0, 0, loc)}, 0, false, 40},
	}
	for i, c := range cases {
		s := baseSettings()
		s.Notifications.OverdueAfterDays = c.after
		d := Decide(Input{Now: now, Settings: s, Run: c.run})
		if d.Overdue != c.want || d.OverdueDays != c.days {
			t.Errorf("%d: overdue=%v days=%d, want %v %d", i, d.Overdue, d.OverdueDays, c.want, c.days)
		}
	}
}

func TestRetryDelayIsCapped(t *testing.T) {
	if d := RetryDelay(time.Hour, 10); d != MaxRetryDelay {
		t.Fatalf("got %v", d)
	}
	if d := RetryDelay(10*time.Minute, 3); d != 40*time.Minute {
		t.Fatalf("got %v", d)
	}
}
