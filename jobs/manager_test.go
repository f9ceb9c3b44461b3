package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/failure"
	"snapback/internal/testenv"
	"snapback/settings"
)

const threeDevices = `
location: /backups
schedule: {window: "09:00-23:00", retry_delay: 10m, max_retries: 2}
conditions: {min_battery: 0}
devices: [{udid: 00008110-00000000000000AA, name: Anna}, {udid: 00008110-00000000000000BB}, {udid: 00008110-00000000000000CC}]
`

// gate lets a test hold runs until it releases them.
type gate struct{ release chan struct{} }

func (g gate) fn(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error) {
	select {
	case <-g.release:
		return RunResult{}, nil
	case <-ctx.Done():
		return RunResult{}, context.Cause(ctx)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, what, cond)
}

func TestQueueLimitAndManualFirst(t *testing.T) {
	loc := berlin(t)
	// 08:00: outside the window, so nothing starts by itself yet.
	h := newHarness(t, time.Date(2026, 6, 10, 8, 0, 0, 0, loc), mustSettings(t, threeDevices), "", 1)
	g := gate{release: make(chan struct{})}
	h.runner.fn = g.fn
	sub := h.m.Bus().Subscribe(AllEvents)
	defer sub.Close()
	for _, u := range []string{devA, devB, devC} {
		h.devs.attach(t, u, settings.TransportUSB)
	}
	// A starts manually and holds the only slot.
	if err := h.m.BackUpNow(context.Background(), devA); err != nil {
		t.Fatal(err)
	}
	if err := h.m.BackUpNow(context.Background(), devA); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second BackUpNow: %v", err)
	}
	// The window opens: B and C are queued automatically; then C is asked for manually and
	// must overtake B.
	h.clock.Set(time.Date(2026, 6, 10, 9, 0, 0, 0, loc))
	h.tick <- h.clock.Now()
	if err := h.m.BackUpNow(context.Background(), devC); err != nil {
		t.Fatal(err)
	}
	h.sync()
	st := h.m.Status()
	if st.Running != 1 || st.Queued != 2 {
		t.Fatalf("running %d queued %d, want 1 and 2", st.Running, st.Queued)
	}
	if c, _ := st.Device(devC); c.State != StateQueued || !c.Manual {
		t.Fatalf("C: %+v", c)
	}
	if a, _ := st.Device(devA); a.State != StateBackingUp || a.Name != "Anna" {
		t.Fatalf("A: %+v", a)
	}
	for range 3 {
		g.release <- struct{}{}
	}
	h.idle()
	var order []string
	for _, r := range h.runner.records() {
		order = append(order, r.req.UDID)
	}
	if strings.Join(order, " ") != devA+" "+devC+" "+devB {
		t.Fatalf("run order %v, want A C B", order)
	}
	if h.runner.maxActive != 1 {
		t.Fatalf("max active %d, want 1", h.runner.maxActive)
	}
	if _, err := h.m.Cancel(context.Background(), devA); err != nil {
		t.Fatal(err)
	}
	// Manual A and C count as the day's backup: no automatic run follows.
	h.clock.Advance(time.Hour)
	h.step()
	if n := len(h.runner.records()); n != 3 {
		t.Fatalf("%d runs, want 3", n)
	}
}

func TestCancelCountsAsAttemptAndDetachDropsQueued(t *testing.T) {
	loc := berlin(t)
	h := newHarness(t, time.Date(2026, 6, 10, 10, 0, 0, 0, loc), mustSettings(t, threeDevices), "", 1)
	g := gate{release: make(chan struct{})}
	h.runner.fn = g.fn
	h.devs.attach(t, devA, settings.TransportUSB)
	h.devs.attach(t, devB, settings.TransportUSB)
	h.sync()
	if st := h.m.Status(); st.Running != 1 || st.Queued != 1 {
		t.Fatalf("%+v", st)
	}
	h.devs.detach(t, devB)
	h.sync()
	if st := h.m.Status(); st.Queued != 0 {
		t.Fatalf("detach left B queued: %+v", st)
	}
	found, err := h.m.Cancel(context.Background(), devA)
	if err != nil || !found {
		t.Fatalf("Cancel: %v %v", found, err)
	}
	h.idle()
	rec := h.state.Device(devA)
	if rec.LastResult != ResultCancelled || len(rec.Failures) != 1 {
		t.Fatalf("after cancel: %+v", rec)
	}
	// Not restarted at once: it waits out the retry delay.
	h.clock.Advance(time.Minute)
	h.step()
	if a, _ := h.m.Status().Device(devA); a.State != StateFailed || a.Reason != ReasonRetryWait {
		t.Fatalf("A: %v %v", a.State, a.Reason)
	}
}

func TestPasscodeEventsAndFailure(t *testing.T) {
	loc := berlin(t)
	h := newHarness(t, time.Date(2026, 6, 10, 10, 0, 0, 0, loc), mustSettings(t, threeDevices), "", 2)
	asked := make(chan struct{})
	h.runner.fn = func(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error) {
		progress(Progress{Phase: PhaseWaitingPasscode, Percent: -1})
		<-asked
		return RunResult{}, failure.New(failure.DeviceLocked, nil)
	}
	sub := h.m.Bus().Subscribe(EventPasscodeRequested | EventPasscodeDismissed | EventRunFailed)
	defer sub.Close()
	h.devs.attach(t, devA, settings.TransportUSB)
	ev := <-sub.C
	if ev.Type != EventPasscodeRequested || ev.UDID != devA || ev.Name != "Anna" {
		t.Fatalf("%+v", ev)
	}
	waitFor(t, "WaitingPasscode state", func() bool { a, _ := h.m.Status().Device(devA); return a.State == StateWaitingPasscode })
	close(asked)
	if ev := <-sub.C; ev.Type != EventPasscodeDismissed {
		t.Fatalf("%+v", ev)
	}
	if ev := <-sub.C; ev.Type != EventRunFailed || ev.Result != ResultPasscodeTimeout || ev.Err == "" {
		t.Fatalf("%+v", ev)
	}
	h.idle()
	if a, _ := h.m.Status().Device(devA); a.State != StateFailed || a.LastResult != ResultPasscodeTimeout {
		t.Fatalf("%+v", a)
	}
}

func TestOverdueSignalledOncePerDay(t *testing.T) {
	loc := berlin(t)
	dir := t.TempDir()
	st, _ := OpenState(filepath.Join(dir, "state.json"))
	st.UpdateDevice(devA, func(d *DeviceRecord) { d.LastSuccess = time.Date(2026, 6, 1, 10, 0, 0, 0, loc) })
	h := newHarness(t, time.Date(2026, 6, 10, 8, 0, 0, 0, loc), mustSettings(t, threeDevices), filepath.Join(dir, "state.json"), 2)
	h.sync() // the start-up check raised today's signal already
	sub := h.m.Bus().Subscribe(EventOverdue)
	defer sub.Close()
	for range 5 {
		h.clock.Advance(time.Minute)
		h.step()
	}
	h.clock.Advance(24 * time.Hour)
	h.step()
	h.step()
	var n int
	for len(sub.C) > 0 {
		ev := <-sub.C
		if ev.UDID != devA || ev.OverdueDays < 9 {
			t.Fatalf("%+v", ev)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d overdue events over 1 new day, want 1", n)
	}
	if a, _ := h.m.Status().Device(devA); !a.Overdue || a.OverdueDays != 10 {
		t.Fatalf("%+v", a)
	}
}

func TestPauseStopsAutomaticButNotManual(t *testing.T) {
	loc := berlin(t)
	h := newHarness(t, time.Date(2026, 6, 10, 8, 0, 0, 0, loc), mustSettings(t, threeDevices), "", 2)
	if err := h.m.SetPaused(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	h.devs.attach(t, devA, settings.TransportUSB)
	h.clock.Set(time.Date(2026, 6, 10, 12, 0, 0, 0, loc))
	h.step()
	if n := len(h.runner.records()); n != 0 {
		t.Fatalf("%d runs while paused", n)
	}
	if a, _ := h.m.Status().Device(devA); a.State != StatePaused || a.Reason != ReasonPaused {
		t.Fatalf("%+v", a)
	}
	if err := h.m.BackUpNow(context.Background(), devA); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if r := h.runner.records(); len(r) != 1 || !r[0].req.Manual {
		t.Fatalf("%+v", r)
	}
	if !h.m.Status().Paused || !h.state.Snapshot().Paused {
		t.Fatal("pause not kept")
	}
}

// A backup the store committed today without this manager (snapback backup from the CLI)
// counts as the day's backup; one from yesterday does not.
func TestBackupOutsideManagerCountsForTheDay(t *testing.T) {
	loc := berlin(t)
	start := time.Date(2026, 6, 10, 8, 0, 0, 0, loc)
	committed := map[string]time.Time{devA: time.Date(2026, 6, 10, 7, 30, 0, 0, loc), devB: time.Date(2026, 6, 9, 22, 0, 0, 0, loc)}
	h := newHarness(t, start, mustSettings(t, threeDevices), "", 2, func(c *Config) {
		c.LastBackup = func(udid string) time.Time { return committed[udid] }
	})
	h.devs.attach(t, devA, settings.TransportUSB)
	h.devs.attach(t, devB, settings.TransportUSB)
	h.clock.Set(time.Date(2026, 6, 10, 12, 0, 0, 0, loc))
	h.step()
	r := h.runner.records()
	if len(r) != 1 || r[0].req.UDID != devB {
		t.Fatalf("runs %+v; want only B (A was backed up this morning outside the manager)", r)
	}
	if a, _ := h.m.Status().Device(devA); a.Reason != ReasonDoneToday {
		t.Fatalf("A: reason %v, want done today", a.Reason)
	}
}

func TestRunStopsAndCancelsRunsOnShutdown(t *testing.T) {
	g := gate{release: make(chan struct{})}
	m, st, cancel, done := runWithDeviceA(t, g.fn)
	waitFor(t, "run to start", func() bool { return m.Status().Running == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rec := st.Device(devA); rec.LastResult != ResultNone || len(rec.Failures) != 0 {
		t.Fatalf("shutdown counted as an attempt: %+v", rec)
	}
	if err := m.BackUpNow(context.Background(), devA); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("after stop: %v", err)
	}
}

func TestNewManagerNeedsRunner(t *testing.T) {
	st, _ := OpenState("")
	_, err := NewManager(Config{Settings: func() *settings.Settings { return nil }, State: st, Now: time.Now})
	if err == nil || !strings.Contains(err.Error(), "Runner") {
		t.Fatalf("err = %v", err)
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "state.json")
	st, err := OpenState(p)
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	when := time.Date(2026, 6, 10, 10, 0, 0, 0, time.UTC)
	if err := st.UpdateDevice("00008030-001A2B3C4D5E802E", func(d *DeviceRecord) {
		d.recordResult(ResultSuccess, true, when, when, "")
		d.PendingApproval = &Approval{ID: "x", Summary: "delete 2 snapshots", Since: when}
	}); err != nil {
		t.Fatal(err)
	}
	st2, err := OpenState(p)
	if err != nil {
		t.Fatal(err)
	}
	d := st2.Device("00008030-001A2B3C4D5E802E")
	if !d.LastSuccess.Equal(when) || !d.LastSuccessManual || d.LastResult != ResultSuccess || d.PendingApproval.ID != "x" {
		t.Fatalf("round trip: %+v", d)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}

	os.WriteFile(p, []byte(`{"version": 1, "devices": {`), 0o600)
	st3, err := OpenState(p)
	var ce *CorruptStateError
	if !errors.As(err, &ce) || st3 == nil || len(st3.Snapshot().Devices) != 0 {
		t.Fatalf("corrupt: %v %v", st3, err)
	}
	if b, _ := os.ReadFile(p + ".corrupt"); !strings.Contains(string(b), `"devices": {`) {
		t.Fatal("corrupt file not kept aside")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("corrupt file still in place")
	}
}

func TestProgressEventsAreThrottled(t *testing.T) {
	loc := berlin(t)
	h := newHarness(t, time.Date(2026, 6, 10, 10, 0, 0, 0, loc), mustSettings(t, threeDevices), "", 2)
	h.runner.fn = func(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error) {
		for i := range 1000 {
			progress(Progress{Phase: PhaseTransferring, Files: i}) // same instant on the fake clock
		}
		progress(Progress{Phase: PhaseCommitting, Files: 1000})
		return RunResult{}, nil
	}
	sub := h.m.Bus().Subscribe(EventProgress)
	defer sub.Close()
	h.devs.attach(t, devA, settings.TransportUSB)
	h.idle()
	var phases []Phase
	for len(sub.C) > 0 {
		phases = append(phases, (<-sub.C).Progress.Phase)
	}
	// The fake runner's first report (Transferring), then Committing: 2 events, not 1002.
	if len(phases) != 2 || phases[1] != PhaseCommitting || sub.Dropped() != 0 {
		t.Fatalf("progress events: %v (dropped %d)", phases, sub.Dropped())
	}
}

// A finished run's event carries what the views show: transport, bytes sent, backup size,
// files, duration, snapshot ID and warnings; the failed run's event carries the classified
// message and its remedy separately (never the remedy inside the message).
func TestFinishedEventCarriesTheRun(t *testing.T) {
	loc := berlin(t)
	h := newHarness(t, time.Date(2026, 6, 10, 10, 0, 0, 0, loc), mustSettings(t, threeDevices), "", 2)
	fail := true
	h.runner.fn = func(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error) {
		if fail {
			return RunResult{}, failure.New(failure.DeviceLocked, nil)
		}
		h.clock.Advance(90 * time.Second) // the run takes a minute and a half
		return RunResult{Snapshot: "20260610-100130", Dir: "/b/A", Bytes: 500_000, Files: 3, Size: 348_000_000,
			Warnings: []string{"retention did not run"}}, nil
	}
	sub := h.m.Bus().Subscribe(EventRunFinished | EventRunFailed)
	defer sub.Close()
	h.devs.attach(t, "A", settings.TransportWiFi)
	ev := <-sub.C
	if ev.Type != EventRunFailed || ev.Err != failure.DeviceLocked.Message() || ev.Remedy != failure.DeviceLocked.Remedy() || ev.Run != nil {
		t.Fatalf("failed event %+v", ev)
	}
	h.idle()
	fail = false
	if err := h.m.BackUpNow(context.Background(), "A"); err != nil {
		t.Fatal(err)
	}
	ev = <-sub.C
	r := ev.Run
	if ev.Type != EventRunFinished || r == nil || r.Transport != settings.TransportWiFi || r.Bytes != 500_000 || r.Size != 348_000_000 ||
		r.Files != 3 || r.Snapshot != "20260610-100130" || r.Duration != 90*time.Second || len(r.Warnings) != 1 || r.Dir != "/b/A" {
		t.Fatalf("finished event %+v, run %+v", ev, r)
	}
}

// A run's After (the scrub, preparing the next backup's folder) runs once RunFinished is out,
// so the user hears of the backup without waiting for it; meanwhile a Back Up Now of the same
// device is queued, not started, and the manager counts as busy. Damage it found is
// published as DamageFound when it returns. Shutdown cancels After's context and waits for
// it.
func TestAfterRunsOnceTheResultIsOut(t *testing.T) {
	loc := berlin(t)
	h := newHarness(t, time.Date(2026, 6, 10, 10, 0, 0, 0, loc), mustSettings(t, threeDevices), "", 2)
	afterStarted, release := make(chan struct{}), make(chan struct{})
	afterEnded := make(chan error, 1)
	told := make(chan struct{})
	calls := 0
	h.runner.fn = func(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error) {
		calls++
		if calls > 1 {
			return RunResult{Snapshot: "second"}, nil
		}
		return RunResult{Snapshot: "first", After: func(ctx, hurry context.Context) AfterReport {
			close(afterStarted)
			select {
			case <-hurry.Done(): // the scrub would stop here; this After goes on to the end
				if ctx.Err() != nil {
					afterEnded <- ctx.Err()
					return AfterReport{}
				}
				close(told)
			case <-ctx.Done():
				afterEnded <- ctx.Err()
				return AfterReport{}
			}
			select {
			case <-release:
				afterEnded <- nil
			case <-ctx.Done():
				afterEnded <- ctx.Err()
			}
			return AfterReport{Damaged: 3}
		}}, nil
	}
	sub := h.m.Bus().Subscribe(EventRunFinished | EventRunStarted | EventDamageFound)
	defer sub.Close()
	h.devs.attach(t, devA, settings.TransportUSB)
	for _, want := range []EventType{EventRunStarted, EventRunFinished} {
		if ev := <-sub.C; ev.Type != want {
			t.Fatalf("event %v, want %v", ev.Type, want)
		}
	}
	<-afterStarted // RunFinished was published while After had not even started or was running
	if err := h.m.BackUpNow(context.Background(), devA); err != nil {
		t.Fatalf("Back Up Now while the last run's After runs: %v", err)
	}
	select { // the queued run is announced to the After
	case <-told:
	case <-time.After(time.Minute):
		t.Fatal("the After never heard that a run waits for it")
	}
	h.sync()
	if st := h.m.Status(); st.Running != 0 || st.Queued != 1 || len(h.runner.records()) != 1 {
		t.Fatalf("a second run started during the first one's After: status %+v, runs %d", st, len(h.runner.records()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := h.m.WaitIdle(ctx); err == nil {
		t.Error("the manager said idle while a run's After was still running")
	}
	cancel()
	close(release)
	if err := <-afterEnded; err != nil {
		t.Fatalf("After ended with %v", err)
	}
	if ev := <-sub.C; ev.Type != EventDamageFound || ev.Damaged != 3 || ev.UDID != devA || ev.Name == "" {
		t.Fatalf("event %+v after After returned, want DamageFound of 3 files of %s, named", ev, devA)
	}
	if ev := <-sub.C; ev.Type != EventRunStarted {
		t.Fatalf("event %v after After returned, want the queued run to start", ev.Type)
	}
	h.idle()
	if n := len(h.runner.records()); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
}

func TestShutdownWaitsForAfter(t *testing.T) {
	afterStarted, afterEnded := make(chan struct{}), make(chan error, 1)
	_, _, cancel, done := runWithDeviceA(t, func(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error) {
		return RunResult{After: func(ctx, _ context.Context) AfterReport {
			close(afterStarted)
			<-ctx.Done()
			afterEnded <- ctx.Err()
			return AfterReport{}
		}}, nil
	})
	<-afterStarted
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-afterEnded:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("After's context ended with %v", err)
		}
	default:
		t.Fatal("Run returned before the run's After did")
	}
}

// runWithDeviceA runs a Manager whose runner answers with fn, without the harness (the test
// stops it itself: cancel, then read done), and attaches device A, inside its window.
func runWithDeviceA(t *testing.T, fn func(context.Context, RunRequest, func(Progress)) (RunResult, error)) (*Manager, *StateStore, context.CancelFunc, chan error) {
	t.Helper()
	st, _ := OpenState("")
	clock := newFakeClock(time.Date(2026, 6, 10, 10, 0, 0, 0, berlin(t)))
	devs := newFakeDevices()
	m, err := NewManager(Config{Settings: func() *settings.Settings { return mustSettings(t, threeDevices) },
		State: st, Runner: &fakeRunner{now: clock.Now, fn: fn}, Devices: devs, Now: clock.Now, Tick: make(chan time.Time)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	devs.attach(t, devA, settings.TransportUSB)
	return m, st, cancel, done
}
