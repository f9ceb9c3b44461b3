package app

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/devicesim/simtest"
	"snapback/jobs"
	"snapback/notify"
	"snapback/notify/notifytest"
	"snapback/settings"
	"snapback/tray"
)

// TestControllerSwitchesWiFiSync: the Wi-Fi sync state is read from the device as it attaches
// (over the real usbmuxd socket of the simulator), the tray shows it as the device's "Back Up
// over Wi-Fi" item, and clicking the item switches the device's EnableWifiConnections through
// the controller. A switch the device refuses (it does not trust this computer) raises the
// CommandFailed notification and changes nothing.
func TestControllerSwitchesWiFiSync(t *testing.T) {
	sim := simtest.Start(t)
	dev, _ := simtest.AddDevice(t, sim, devicesim.DeviceConfig{USB: true}, backupsim.Options{})
	udid := dev.Identity().UDID
	untrusted, _ := simtest.AddDevice(t, sim, devicesim.DeviceConfig{Identity: devicesim.DefaultIdentity(1), USB: true, Unpaired: true}, backupsim.Options{})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wifi := &WiFiSync{}
	events := (&Devices{WiFi: wifi}).Events(ctx)
	seen := map[string]bool{}
	for !seen[udid] || !seen[untrusted.Identity().UDID] {
		select {
		case ev := <-events:
			seen[ev.UDID] = ev.Attached
		case <-ctx.Done():
			t.Fatalf("devices not attached: %v", seen)
		}
	}
	menuItem := func() tray.Item {
		t.Helper()
		st := jobs.Status{Devices: []jobs.DeviceStatus{{UDID: udid, Name: "Anna's iPhone", Connected: true}}}
		m := tray.Build(TrayState(time.Now(), st, nil, nil, wifi.Snapshot()))
		for _, d := range m.Items {
			for _, it := range d.Children {
				if it.Key == "device/"+udid+"/wifi" {
					return it
				}
			}
		}
		t.Fatalf("no Wi-Fi item for %s", udid)
		return tray.Item{}
	}
	if it := menuItem(); it.Checked || it.Action.On != true {
		t.Fatalf("Wi-Fi item of a device with Wi-Fi sync off = %+v", it)
	}
	if got := trayWiFiSync(wifi.Snapshot(), untrusted.Identity().UDID); got != tray.WiFiSyncUnknown {
		t.Errorf("an untrusted device's Wi-Fi state = %v; it cannot be read", got)
	}

	rec := &notifytest.Recorder{}
	s, _ := settings.Parse([]byte("location: " + t.TempDir() + "\n"))
	c := &Controller{Ctx: ctx, Logger: slog.New(slog.DiscardHandler), Notifier: rec, WiFi: wifi,
		Settings: func() *settings.Settings { return s }}
	menuItem().Action.Do(c) // the click
	c.Wait()
	if !dev.WifiConnectionsEnabled() {
		t.Fatalf("clicking Back Up over Wi-Fi did not switch the device on; notifications %+v", rec.Messages())
	}
	if it := menuItem(); !it.Checked || it.Action.On != false {
		t.Errorf("after switching on, the item = %+v", it)
	}
	menuItem().Action.Do(c)
	c.Wait()
	if dev.WifiConnectionsEnabled() || menuItem().Checked {
		t.Error("the second click did not switch Wi-Fi sync off")
	}
	if msgs := rec.Messages(); len(msgs) != 0 {
		t.Fatalf("switching notified %+v", msgs)
	}

	c.SetWiFiSync(untrusted.Identity().UDID, true)
	c.Wait()
	msgs := rec.Messages()
	if len(msgs) != 1 || msgs[0].Kind != notify.ActionFailed || msgs[0].Title != "Could not switch Wi-Fi sync on" ||
		!strings.Contains(strings.ToLower(msgs[0].Body), "pair") {
		t.Fatalf("a refused switch notified %+v; want one CommandFailed naming pairing", msgs)
	}
	if untrusted.WifiConnectionsEnabled() {
		t.Error("the untrusted device's Wi-Fi sync was switched")
	}
}
