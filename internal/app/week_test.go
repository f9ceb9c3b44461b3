package app

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/devicesim/simtest"
	"snapback/internal/store"
	"snapback/internal/testenv"
	"snapback/jobs"
	"snapback/notify"
	"snapback/notify/notifytest"
	"snapback/settings"
)

// weekClock is the injected clock of the week: the schedule runs on it, the simulator and
// the protocol on real (short) time.
type weekClock struct{ ns atomic.Int64 }

func (c *weekClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).Local() }
func (c *weekClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *weekClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// A week in the life: the daemon's scheduler (jobs.Manager with the real Runner, Devices and
// Notifications) meets a device that behaves like a real one: it has never trusted this
// computer (Trust dialog, with the user taking a moment), asks for the passcode on every
// backup, cannot read one file (the same FileProvider database every time), scans silently
// before each backup (scaled down), asks for 11 TB of free space, and drops its link once.
// Over seven simulated days it ends with seven committed, verifiable snapshots, and the user
// sees exactly: Trust once, the passcode prompt and "backed up, 1 file could not be read"
// each day; no failure notification for the link that dropped and was retried.
func TestWeekInTheLife(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	id := devicesim.DefaultIdentity(0)
	id.DeviceName = "Anna's iPhone"
	dev, agent := simtest.AddDevice(t, simtest.Start(t), devicesim.DeviceConfig{Identity: id, USB: true, BatteryLevel: 80,
		Unpaired: true, TrustDelay: 300 * time.Millisecond}, backupsim.Options{
		Files: 120, TotalSize: 3 << 20, Seed: 11, MutatePercent: 5,
		PasscodeDelay: 100 * time.Millisecond,
		QuirkPlan: func(int64) backupsim.Quirks {
			return backupsim.Quirks{ScanDelay: 150 * time.Millisecond, FileErrors: 1, PurgeDemand: 11 << 40}
		},
	})

	cfg, err := settings.Parse([]byte("schedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	state, err := jobs.OpenState(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	clock := &weekClock{}
	day1 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.Local)
	clock.Set(day1)
	tick := make(chan time.Time)
	stores := &Stores{Now: clock.Now}
	m, err := jobs.NewManager(jobs.Config{
		Settings: func() *settings.Settings { return cfg },
		State:    state,
		Runner:   &Runner{Backups: &Backups{Now: clock.Now, Stores: stores, Settings: func() *settings.Settings { return cfg }}},
		Devices:  &Devices{RetryAfter: 100 * time.Millisecond},
		Now:      clock.Now,
		Tick:     tick,
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := &notifytest.Recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := &Notifications{Bus: m.Bus(), Notifier: rec, Settings: func() *settings.Settings { return cfg }}
	// Subscribe before the manager runs, so the first run's events are not missed.
	nctx, ncancel := context.WithCancel(ctx)
	ndone := make(chan struct{})
	go func() { defer close(ndone); n.Run(nctx) }()
	mdone := make(chan error, 1)
	go func() { mdone <- m.Run(ctx) }()
	defer func() {
		cancel()
		<-mdone
		ncancel()
		<-ndone
	}()

	st, err := stores.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	snapshots := func() []store.Snapshot {
		list, err := st.List(id.UDID)
		if err != nil {
			t.Fatal(err)
		}
		return list
	}
	// waitRuns waits until the device has finished want backup requests and the manager is
	// idle again.
	waitRequests := func(want int64) {
		t.Helper()
		if !testenv.Eventually(60*time.Second, func() bool { return agent.Counters().Backups+agent.Counters().FailedBackups >= want }) {
			t.Fatalf("only %+v after 60 s", agent.Counters())
		}
		testenv.WaitFor(t, 60*time.Second, "the manager to be idle", func() bool {
			if err := m.WaitIdle(ctx); err != nil {
				t.Fatal(err)
			}
			return m.Status().Running == 0
		})
	}
	doTick := func() {
		t.Helper()
		select {
		case tick <- clock.Now():
		case <-ctx.Done():
			t.Fatal("manager did not take the tick")
		}
	}

	requests := int64(0)
	for day := 1; day <= 7; day++ {
		clock.Set(day1.AddDate(0, 0, day-1))
		if day == 4 {
			// The link drops in the middle of this day's upload.
			dev.SetDropBackupAfter(400 << 10)
		}
		if day > 1 {
			doTick()
		}
		requests++
		waitRequests(requests)
		if day == 4 {
			if got := len(snapshots()); got != 3 {
				t.Fatalf("day 4: %d snapshots after the dropped link; want still 3", got)
			}
			dev.SetDropBackupAfter(0)
			clock.Add(20 * time.Minute) // past the retry delay
			doTick()
			requests++
			waitRequests(requests)
		}
		if got := len(snapshots()); got != day {
			t.Fatalf("day %d: %d snapshots; want %d (device %+v)", day, got, day, agent.Counters())
		}
	}

	snaps := snapshots()
	for _, s := range snaps {
		if err := st.Verify(ctx, id.UDID, s.ID); err != nil {
			t.Errorf("snapshot %s does not verify: %v", s.ID, err)
		}
		if len(s.Exceptions) != 1 {
			t.Errorf("snapshot %s records %d unreadable files; want the 1", s.ID, len(s.Exceptions))
		}
	}
	if c := agent.Counters(); c.Backups != 7 || c.FailedBackups != 1 || c.PurgeRequests < 8 {
		t.Errorf("device counters %+v; want 7 backups, 1 failed (the dropped link), a purge request each time", c)
	}
	if dev.TrustDialogs() != 1 {
		t.Errorf("the Trust dialog appeared %d times; want once", dev.TrustDialogs())
	}

	// Exactly what the user should see, in order.
	var got []string
	for _, msg := range rec.Messages() {
		got = append(got, msg.Kind.String())
	}
	want := []string{"trust-requested"}
	for day := 1; day <= 7; day++ {
		want = append(want, "passcode-requested")
		if day == 4 {
			want = append(want, "passcode-requested") // the retry asks again
		}
		want = append(want, "completed")
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("notifications:\n got %v\nwant %v", got, want)
	}
	msgs := rec.Messages()
	if !strings.Contains(msgs[0].Title, "Tap Trust on Anna's iPhone") {
		t.Errorf("trust notification %q", msgs[0].Title)
	}
	for _, msg := range msgs {
		if msg.Kind == notify.Completed && !strings.Contains(msg.Body, "1 file could not be read") {
			t.Errorf("completion notification does not mention the unreadable file: %q", msg.Body)
		}
	}
}
