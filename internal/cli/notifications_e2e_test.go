package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"snapback/internal/app"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/jobs"
	"snapback/notify"
)

// TestPasscodeTimeoutNotifiedOnce: the device refuses the backup because the passcode was
// not entered (device error 208). The failure notification states the cause once, "208" at
// most once and the remedy once (it went through engine, runner, jobs and the notification
// text, each of which used to add its own wording).
func TestPasscodeTimeoutNotifiedOnce(t *testing.T) {
	dir := cfgTestEnv(t)
	writeConfig(t, dir, "schedule: {window: '00:00-24:00', max_retries: 0}\nconditions: {min_battery: 0}\n")
	sim := startSim(t)
	// The sheet times out after 600 ms; the engine's cancel window is scaled to 100 ms to
	// match (a sheet gone sooner than that before a 208 would be a Cancel tap).
	id, _ := addDevice(t, sim, 9, "18.1", 80, backupsim.Options{Files: 10, TotalSize: 1 << 18, Seed: 4,
		PasscodeDelay: -1, PasscodeTimeout: 600 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failed := make(chan notify.Message, 4)
	rec := notifierFunc(func(m notify.Message) error {
		if m.Kind == notify.Failed {
			failed <- m
		}
		return nil
	})
	log := &syncBuffer{}
	m, stop := startDaemon(t, log, app.Config{Logger: slogTo(log), Notifier: rec,
		Runner: &app.Runner{Backups: &app.Backups{Stores: &app.Stores{}, PasscodeCancelWindow: 100 * time.Millisecond}}})
	sub := m.Bus().Subscribe(jobs.EventRunFailed)
	defer sub.Close()
	var ev jobs.Event
	if d, ok := sub.Initial.Device(id.UDID); ok && d.LastResult == jobs.ResultPasscodeTimeout {
		ev.Result = d.LastResult
	} else {
		select {
		case ev = <-sub.C:
		case <-ctx.Done():
			t.Fatalf("no failure reported\n%s", log.String())
		}
	}
	if ev.Result != jobs.ResultPasscodeTimeout {
		t.Fatalf("result %v (%s); want the passcode timeout", ev.Result, ev.Err)
	}
	var body string
	select {
	case msg := <-failed:
		body = msg.Body
	case <-ctx.Done():
		t.Fatalf("no failure notification\n%s", log.String())
	}
	lower := strings.ToLower(body)
	if strings.Count(body, "208") > 1 || strings.Count(lower, strings.ToLower(failure.DeviceLocked.Remedy())) != 1 ||
		strings.Count(lower, failure.DeviceLocked.Message()) != 1 {
		t.Fatalf("failure notification repeats itself: %q", body)
	}
	if err := m.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	d, _ := m.Status().Device(id.UDID)
	if strings.Count(d.LastError, "208") > 1 || strings.Count(strings.ToLower(d.LastError), strings.ToLower(failure.DeviceLocked.Remedy())) != 1 {
		t.Fatalf("status LastError repeats itself: %q", d.LastError)
	}
	stop()
}

// notifierFunc is a notify.Notifier from a function.
type notifierFunc func(notify.Message) error

func (f notifierFunc) Notify(m notify.Message) error { return f(m) }
