//go:build linux

package cli

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"snapback/internal/app"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/store"
	"snapback/internal/testenv"
	"snapback/jobs"
	"snapback/notify"
	"snapback/notify/notifytest"
)

// TestDaemonBackupDiskUnplugged is issue 11's first "done when" for the daemon: the app
// (settings file, job manager, the real runner, store and notifications) backs a simulated
// iPhone up onto a loop-mounted ext4 disk by itself. The disk is unmounted; the next
// scheduled backup (a day later, on wake-up) is refused as disk missing, the disk-missing
// notification names the location, the device is not contacted and nothing is written into
// the empty mount point. The disk is mounted again; the next scheduled backup is incremental
// onto the first.
func TestDaemonBackupDiskUnplugged(t *testing.T) {
	dir := cfgTestEnv(t)
	disk := newLoopDisk(t, 256)
	writeConfig(t, dir, "location: "+disk.mnt+"\nschedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\n")
	sim := startSim(t)
	id, agent := addDevice(t, sim, 0, "18.1", 80, backupsim.Options{Files: 60, TotalSize: 2 << 20, Seed: 5})

	// The schedule runs on an injected clock; a wake-up (as after sleep) makes it look at once.
	var now atomic.Int64
	now.Store(time.Date(2026, 3, 2, 10, 0, 0, 0, time.Local).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).Local() }
	nextDay := func() { now.Add(int64(24 * time.Hour)) }
	wake := make(chan struct{})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec := &notifytest.Recorder{}
	ready := make(chan *jobs.Manager, 1)
	done := make(chan error, 1)
	log := &syncBuffer{}
	go func() {
		done <- app.New(app.Config{Logger: slogTo(log), Notifier: rec, Now: clock, Wake: wake,
			Ready: func(m *jobs.Manager) { ready <- m }}).Run(ctx)
	}()
	var m *jobs.Manager
	select {
	case m = <-ready:
	case err := <-done:
		t.Fatalf("daemon stopped: %v\n%s", err, log.String())
	}
	defer func() {
		cancel()
		<-done
	}()
	// settle waits until the manager has finished what it started and returns the device.
	settle := func(what string, ok func(jobs.DeviceStatus) bool) jobs.DeviceStatus {
		t.Helper()
		var d jobs.DeviceStatus
		if !testenv.Eventually(60*time.Second, func() bool {
			if err := m.WaitIdle(ctx); err != nil {
				t.Fatal(err)
			}
			st := m.Status()
			d, _ = st.Device(id.UDID)
			return st.Running == 0 && st.Queued == 0 && ok(d)
		}) {
			t.Fatalf("%s: device status %+v; log:\n%s", what, d, log.String())
		}
		return d
	}
	wakeUp := func() {
		t.Helper()
		select {
		case wake <- struct{}{}:
		case <-ctx.Done():
			t.Fatal("the manager did not take the wake-up")
		}
	}

	// Day 1: the first backup happens by itself onto the disk.
	settle("first backup", func(d jobs.DeviceStatus) bool {
		return agent.Counters().Backups == 1 && d.LastResult == jobs.ResultSuccess
	})
	st, err := store.Open(ctx, disk.mnt, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if snaps, err := st.List(id.UDID); err != nil || len(snaps) != 1 {
		t.Fatalf("after the first backup: %+v %v", snaps, err)
	}

	// Day 2: the disk is unplugged; the scheduled backup is refused as disk missing.
	disk.unmount()
	nextDay()
	wakeUp()
	d := settle("backup with the disk unmounted", func(d jobs.DeviceStatus) bool { return d.LastResult == jobs.ResultDiskMissing })
	if !strings.Contains(d.LastError, "not connected") {
		t.Errorf("last error %q does not say the disk is not connected", d.LastError)
	}
	// The notification follows the status on the app's own event goroutine: wait for it.
	var noDisk []notify.Message
	testenv.Eventually(10*time.Second, func() bool {
		noDisk = noDisk[:0]
		for _, msg := range rec.Messages() {
			if msg.Kind == notify.DiskMissing {
				noDisk = append(noDisk, msg)
			}
		}
		return len(noDisk) > 0
	})
	if len(noDisk) != 1 || noDisk[0].UDID != id.UDID || !strings.Contains(noDisk[0].Body, disk.mnt) {
		t.Fatalf("disk-missing notifications %+v; want one naming %s (all: %+v)", noDisk, disk.mnt, rec.Messages())
	}
	if rec.Count(notify.Failed) != 0 {
		t.Errorf("a missing disk was also notified as a failure: %+v", rec.Messages())
	}
	if entries, err := os.ReadDir(disk.mnt); err != nil || len(entries) != 0 {
		t.Fatalf("the empty mount point now holds %d entries (%v)", len(entries), err)
	}
	if c := agent.Counters(); c.Backups != 1 || c.FailedBackups != 0 {
		t.Errorf("device counters %+v: the refused run must not reach the device", c)
	}

	// Day 3: the disk is back; the scheduled backup is incremental onto the first.
	disk.mount()
	agent.Mutate(5)
	nextDay()
	wakeUp()
	settle("backup after remounting", func(d jobs.DeviceStatus) bool {
		return agent.Counters().Backups == 2 && d.LastResult == jobs.ResultSuccess
	})
	st, err = store.Open(ctx, disk.mnt, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := st.List(id.UDID)
	if err != nil || len(snaps) != 2 || snaps[1].Kind != store.KindIncremental {
		t.Fatalf("after remount: %+v, %v; want the first snapshot and an incremental latest", snaps, err)
	}
	for _, sn := range snaps {
		if err := st.Verify(ctx, id.UDID, sn.ID); err != nil {
			t.Errorf("verify %s: %v", sn.ID, err)
		}
	}
	if c := agent.Counters(); c.IncrementalBackups != 1 {
		t.Errorf("device counters %+v: want the run after remounting incremental", c)
	}
}
