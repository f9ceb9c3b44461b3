package jobs

import (
	"testing"
	"time"
)

// A device that went away mid-run (Wi-Fi dropped, cable pulled) is unreachable, not a
// failed attempt: when it returns it is due at once, with no retry delay, and it uses up
// none of the day's retries.
func TestDeviceGoneIsNotAFailedAttempt(t *testing.T) {
	loc := berlin(t)
	var rec DeviceRecord
	start := time.Date(2026, 6, 10, 10, 0, 0, 0, loc)
	for i := range 5 {
		at := start.Add(time.Duration(i) * time.Minute)
		rec.recordResult(ResultDeviceGone, false, at, at.Add(30*time.Second), "the connection to the device was lost")
	}
	if rec.ConsecutiveFailures != 0 || len(rec.Failures) != 0 || rec.LastResult != ResultDeviceGone || rec.LastError == "" {
		t.Fatalf("record %+v; want device gone recorded with its reason, no failures", rec)
	}
	d := Decide(Input{Now: start.Add(6 * time.Minute), Settings: baseSettings(), Run: rec.RunState, Device: usb})
	if !d.Due {
		t.Fatalf("device back after leaving mid-run: %v (%s); want due", d.Reason, d.Text)
	}
}
