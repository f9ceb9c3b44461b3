package jobs

import (
	"fmt"
	"time"

	"snapback/settings"
)

// Presence is what is known about a device right now.
type Presence struct {
	Connected bool
	// Transport is the link it is connected over: settings.TransportUSB or TransportWiFi.
	Transport settings.Transport
	// Battery is the charge in percent, or -1 when unknown (then it does not block).
	Battery  int
	Charging bool
	// Since is when the device last appeared (zero: unknown, treated as just now).
	Since time.Time
}

// Input is everything Decide looks at. It is plain data: Decide has no other inputs.
type Input struct {
	// Now is the current time; its Location is the user's local time zone, in which the
	// window and "today" are understood.
	Now      time.Time
	Settings settings.DeviceSettings
	Run      RunState
	Device   Presence
	Paused   bool
}

// Reason says why a device is or is not due.
type Reason int

// Reasons Decide gives. Paused, Disabled, DoneToday and OutsideWindow are checked first,
// then presence and transport, then retries, then the charging and battery conditions.
const (
	ReasonDue Reason = iota
	ReasonPaused
	ReasonDisabled
	ReasonDoneToday
	ReasonOutsideWindow
	ReasonNotConnected
	ReasonTransport
	ReasonRetriesExhausted
	ReasonRetryWait
	ReasonBatteryLow
	ReasonNotCharging
	ReasonDeclined
)

var reasonNames = [...]string{"Due", "Paused", "Disabled", "DoneToday", "OutsideWindow", "NotConnected",
	"Transport", "RetriesExhausted", "RetryWait", "BatteryLow", "NotCharging", "Declined"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Decision is Decide's answer.
type Decision struct {
	Due    bool
	Reason Reason
	// Text explains the decision to a person ("waiting 30m after a failed attempt").
	Text string
	// NextCheck is the next time the answer may change by itself; zero when only an outside
	// event (device attached, settings changed, unpaused) can change it.
	NextCheck time.Time
	// Overdue is set when the device has had no successful backup for
	// notifications.overdue_after_days days; OverdueDays counts calendar days since the last
	// success (or since the device was first seen, if it never had one).
	Overdue     bool
	OverdueDays int
}

// MaxRetryDelay caps the growing wait between failed attempts.
const MaxRetryDelay = 4 * time.Hour

// RetryDelay is the wait after the n-th failed attempt of a day (n >= 1):
// base × 2^(n−1), at most MaxRetryDelay.
func RetryDelay(base time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < MaxRetryDelay; i++ {
		d *= 2
	}
	return min(d, MaxRetryDelay)
}

// Decide says whether a device is due for its automatic backup now. A device is due when
// automatic backups are on and not paused, no backup (manual or automatic) succeeded on the
// current window day, now is inside the window, the device is connected over an allowed
// transport, its retries for the day are not used up, it is not waiting out a retry delay,
// and its battery conditions hold (a low battery is fine while charging; an unknown level
// never blocks).
//
// The window day is the local calendar day, except that for a window crossing midnight
// (22:00-06:00) the hours after midnight belong to the previous evening's window. A window
// whose wall-clock hours do not exist on a DST change day simply does not occur that day.
//
// Failed attempts (a passcode not entered counts) are retried after RetryDelay, at most
// max_retries times per window day; a backup the user cancelled on the device is not retried
// automatically that day.
func Decide(in Input) Decision {
	d := decide(in)
	d.Overdue, d.OverdueDays = overdue(in)
	return d
}

func decide(in Input) Decision {
	now := in.Now
	loc := now.Location()
	s := in.Settings.Schedule
	w := s.Window
	today := windowDay(now, w)

	if in.Paused {
		return Decision{Reason: ReasonPaused, Text: "automatic backups are paused"}
	}
	if !s.Enabled {
		return Decision{Reason: ReasonDisabled, Text: "automatic backups are off for this device"}
	}
	if ls := in.Run.LastSuccess; !ls.IsZero() && windowDay(ls.In(loc), w) == today {
		return Decision{Reason: ReasonDoneToday, Text: "already backed up today",
			NextCheck: windowStart(today.next(), w, loc)}
	}
	if !w.Contains(minuteOfDay(now)) {
		return Decision{Reason: ReasonOutsideWindow, Text: "outside the backup window " + w.String(),
			NextCheck: nextWindowStart(now, w)}
	}
	if !in.Device.Connected {
		return Decision{Reason: ReasonNotConnected, Text: "not connected"}
	}
	if !in.Settings.Transport.Allows(in.Device.Transport) {
		return Decision{Reason: ReasonTransport,
			Text: fmt.Sprintf("connected over %s, but backups are set to %s only", in.Device.Transport, in.Settings.Transport)}
	}
	if r := in.Run; r.LastResult == ResultDeclined && !r.LastAttempt.IsZero() && windowDay(r.LastAttempt.In(loc), w) == today {
		// The user tapped Cancel on the device's passcode prompt: asking again in a few
		// minutes would be nagging. Tomorrow's window, or Back Up Now, asks again.
		return Decision{Reason: ReasonDeclined,
			Text:      "the backup was cancelled on the device today; Back Up Now starts it again",
			NextCheck: windowStart(today.next(), w, loc)}
	}
	if r := in.Run; r.LastResult == ResultDeviceGone && !in.Device.Since.IsZero() && !in.Device.Since.After(r.LastAttempt) &&
		windowDay(r.LastAttempt.In(loc), w) == today {
		// The link broke but the device never went away (a flaky cable, a mux that keeps
		// listing an unreachable Wi-Fi device): try again after one retry delay rather than at
		// every tick. A device that left and came back is due at once (Since is newer).
		if until := r.LastAttempt.Add(RetryDelay(s.RetryDelay, 1)); now.Before(until) {
			return Decision{Reason: ReasonRetryWait,
				Text:      fmt.Sprintf("the connection broke; trying again at %s", until.In(loc).Format("15:04")),
				NextCheck: until}
		}
	}
	var failures int
	var lastFailure time.Time
	for _, f := range in.Run.Failures {
		if windowDay(f.In(loc), w) == today {
			failures++
			if f.After(lastFailure) {
				lastFailure = f
			}
		}
	}
	if failures > s.MaxRetries {
		return Decision{Reason: ReasonRetriesExhausted,
			Text:      fmt.Sprintf("gave up for today after %d failed attempts", failures),
			NextCheck: windowStart(today.next(), w, loc)}
	}
	if failures > 0 {
		delay := RetryDelay(s.RetryDelay, failures)
		until := lastFailure.Add(delay)
		// The clock went back (or the state came from a machine with a skewed clock):
		// never wait longer than one delay from now.
		until = minTime(until, now.Add(delay))
		if now.Before(until) {
			return Decision{Reason: ReasonRetryWait,
				Text:      fmt.Sprintf("retrying at %s after %d failed attempt(s)", until.In(loc).Format("15:04"), failures),
				NextCheck: until}
		}
	}
	c := in.Settings.Conditions
	if c.RequireCharging && !in.Device.Charging {
		return Decision{Reason: ReasonNotCharging, Text: "waiting for the device to charge", NextCheck: now.Add(5 * time.Minute)}
	}
	if c.MinBattery > 0 && in.Device.Battery >= 0 && in.Device.Battery < c.MinBattery && !in.Device.Charging {
		return Decision{Reason: ReasonBatteryLow,
			Text:      fmt.Sprintf("battery at %d%%, below %d%%; plug it in", in.Device.Battery, c.MinBattery),
			NextCheck: now.Add(5 * time.Minute)}
	}
	return Decision{Due: true, Reason: ReasonDue, Text: "due", NextCheck: now}
}

func overdue(in Input) (bool, int) {
	since := in.Run.LastSuccess
	if since.IsZero() {
		since = in.Run.FirstSeen
	}
	if since.IsZero() {
		return false, 0
	}
	days := civilOf(in.Now).sub(civilOf(since.In(in.Now.Location())))
	after := in.Settings.Notifications.OverdueAfterDays
	return after > 0 && days >= after, max(days, 0)
}

// civil is a calendar date, free of time zones and DST.
type civil struct {
	y int
	m time.Month
	d int
}

func civilOf(t time.Time) civil {
	y, m, d := t.Date()
	return civil{y, m, d}
}

// noon is a safe instant on the day: it exists on every DST change day.
func (c civil) noon(loc *time.Location) time.Time { return time.Date(c.y, c.m, c.d, 12, 0, 0, 0, loc) }

func (c civil) next() civil { return civilOf(time.Date(c.y, c.m, c.d+1, 12, 0, 0, 0, time.UTC)) }
func (c civil) prev() civil { return civilOf(time.Date(c.y, c.m, c.d-1, 12, 0, 0, 0, time.UTC)) }

func (c civil) sub(o civil) int {
	return int(c.noon(time.UTC).Sub(o.noon(time.UTC)).Hours() / 24)
}

func minuteOfDay(t time.Time) int { return t.Hour()*60 + t.Minute() }

// windowDay is the day whose window t belongs to (see Decide).
func windowDay(t time.Time, w settings.Window) civil {
	c := civilOf(t)
	if w.CrossesMidnight() && minuteOfDay(t) < w.End {
		return c.prev()
	}
	return c
}

// windowStart is when the window of day c opens. When a DST jump skips the opening time, the
// window opens at the jump (the first instant whose wall clock is past the opening).
func windowStart(c civil, w settings.Window, loc *time.Location) time.Time {
	t := time.Date(c.y, c.m, c.d, w.Start/60, w.Start%60, 0, 0, loc)
	if minuteOfDay(t) != w.Start%(24*60) {
		t, _ = t.ZoneBounds()
	}
	return t
}

// nextWindowStart is the first window opening after t.
func nextWindowStart(t time.Time, w settings.Window) time.Time {
	c := civilOf(t)
	for range 3 {
		if s := windowStart(c, w, t.Location()); s.After(t) {
			return s
		}
		c = c.next()
	}
	return time.Time{}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
