package device

import (
	"context"
	"errors"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/simtest"
	"snapback/internal/testenv"
)

func startSim(t *testing.T) *devicesim.Sim {
	t.Helper()
	return simtest.Start(t)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestListPrefersUSB(t *testing.T) {
	sim := startSim(t)
	both, _ := sim.AddDevice(devicesim.DeviceConfig{USB: true, WiFi: true})
	wifi, _ := sim.AddDevice(devicesim.DeviceConfig{WiFi: true})
	list, err := List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("List = %+v; want 2 entries", list)
	}
	got := map[string]Entry{}
	for _, e := range list {
		got[e.UDID] = e
	}
	usbID, _ := both.DeviceIDs()
	if e := got[both.UDID()]; e.Transport != USB || e.DeviceID != usbID || len(e.Transports) != 2 {
		t.Errorf("USB+Wi-Fi device = %+v; want USB entry %d with both transports", e, usbID)
	}
	if e := got[wifi.UDID()]; e.Transport != WiFi {
		t.Errorf("Wi-Fi device = %+v", e)
	}
}

func TestWatchHotplug(t *testing.T) {
	sim := startSim(t)
	d, _ := sim.AddDevice(devicesim.DeviceConfig{Detached: true})
	ctx, cancel := context.WithCancel(ctxT(t))
	ch, errf, err := Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Attach(d.UDID()); err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.Kind != Attached || ev.UDID != d.UDID() {
		t.Errorf("event %+v; want attached %s", ev, d.UDID())
	}
	sim.Detach(d.UDID())
	if ev := <-ch; ev.Kind != Detached || ev.UDID != d.UDID() {
		t.Errorf("event %+v; want detached %s", ev, d.UDID())
	}
	cancel()
	for range ch {
	}
	if err := errf(); err != nil {
		t.Errorf("watch error after cancel: %v", err)
	}
}

func TestSessionInfoNotificationsLock(t *testing.T) {
	sim := startSim(t)
	d, _ := sim.AddDevice(devicesim.DeviceConfig{BatteryLevel: 55, Charging: true})
	ctx := ctxT(t)
	s, err := Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := d.Identity()
	if info.UDID != d.UDID() || info.Name != id.DeviceName || info.ProductVersion != id.ProductVersion ||
		info.SerialNumber != id.SerialNumber || info.IMEI != id.IMEI || info.BatteryLevel != 55 || !info.Charging {
		t.Errorf("Info = %+v; want identity %+v", info, id)
	}

	np, err := s.StartNotifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := np.Observe(NotifySyncCancel); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the device to register the observe", func() bool { return d.Observers(NotifySyncCancel) == 1 })
	d.Post(NotifySyncCancel)
	select {
	case n := <-np.C():
		if n != NotifySyncCancel {
			t.Errorf("got %q", n)
		}
	case <-time.After(5 * time.Second):
		t.Error("no relayed notification")
	}
	if err := np.Post(NotifySyncWillStart); err != nil {
		t.Error(err)
	}

	a1, err := s.StartAFC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a1.Close()
	lock, err := a1.LockSync(ctx, 3, SleepWait(time.Millisecond), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !d.AFCLocked(LockFile) {
		t.Error("lock file not locked on the device")
	}
	a2, _ := s.StartAFC(ctx)
	defer a2.Close()
	if _, err := a2.LockSync(ctx, 3, SleepWait(time.Millisecond), nil); !errors.Is(err, ErrLockBusy) {
		t.Errorf("second lock = %v; want ErrLockBusy", err)
	}
	if err := lock.Unlock(ctx); err != nil {
		t.Error(err)
	}
	if err := np.Close(ctx); err != nil {
		t.Errorf("np close: %v", err)
	}
}

func TestNotPaired(t *testing.T) {
	startSim(t)
	if _, err := Open(ctxT(t), "00008110-00000000DEADBEEF"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open unknown = %v; want ErrNotFound", err)
	}
}

// TestNotPairedRecord: without a pair record (or with one the device does not know) Open
// reports ErrNotPaired, which the engine turns into "trust this computer".
func TestNotPairedRecord(t *testing.T) {
	sim := startSim(t)
	d, _ := sim.AddDevice(devicesim.DeviceConfig{})
	ctx := ctxT(t)
	mux, c, err := dialMux(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := mux.Send(map[string]any{"MessageType": "DeletePairRecord", "PairRecordID": d.UDID()}); err != nil {
		t.Fatal(err)
	}
	if _, err := mux.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := Open(ctx, d.UDID()); !errors.Is(err, ErrNotPaired) {
		t.Errorf("Open without pair record = %v; want ErrNotPaired", err)
	}
}
