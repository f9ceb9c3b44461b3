package device

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/netnstest"
	"snapback/internal/testenv"
)

// wifiSim starts a simulator whose devices (Wi-Fi only) are announced over mDNS on lo, and
// writes their pair records into a folder as usbmuxd keeps them (/var/lib/lockdown).
func wifiSim(t *testing.T, private []bool) (*devicesim.Sim, []*devicesim.Device, string) {
	t.Helper()
	sim, err := devicesim.Start(devicesim.Options{HeartbeatInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	records := t.TempDir()
	var devs []*devicesim.Device
	for i, p := range private {
		id := devicesim.DefaultIdentity(i)
		cfg := devicesim.DeviceConfig{Identity: id, WiFi: true}
		if p {
			cfg.AnnouncedWiFiAddress = devicesim.PrivateWiFiAddress(id.UDID)
		}
		d, err := sim.AddDevice(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := d.PairRecord().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(records, d.UDID()+".plist"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, d)
	}
	if err := sim.StartMDNS("lo"); err != nil {
		t.Fatal(err)
	}
	return sim, devs, records
}

// nextEvent waits for the next event matching want, with a deadline.
func nextEvent(t *testing.T, events <-chan Event, within time.Duration, want func(Event) bool) Event {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream ended")
			}
			if want(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no matching event within %v", within)
		}
	}
}

// TestBuiltinWiFiFindsProvesKeepsAndLosesDevices: with no usbmuxd at all, a Host finds two
// Wi-Fi devices by mDNS, one announcing a private address that matches no pair record,
// proves which is which, keeps each alive with the heartbeat, opens sessions and services
// over TCP, remembers the private address, and reports a device that drops off Wi-Fi as
// detached (and attached again when it returns, at a new address).
func TestBuiltinWiFiFindsProvesKeepsAndLosesDevices(t *testing.T) {
	if !netnstest.Run(t) {
		return
	}
	sim, devs, records := wifiSim(t, []bool{true, false})
	priv, plain := devs[0], devs[1]
	if priv.AnnouncedWiFiAddress() == priv.PairRecord().WiFiMACAddress {
		t.Fatal("the private address equals the pair record's; the test would prove nothing")
	}
	t.Setenv("USBMUXD_SOCKET_ADDRESS", "127.0.0.1:1") // no usbmuxd anywhere
	cache := filepath.Join(t.TempDir(), "wifi.json")
	h := NewHost(HostConfig{WiFi: WiFiBuiltin, PairRecordDir: records, CacheFile: cache,
		BrowseWait: 3 * time.Second, BrowseEvery: 300 * time.Millisecond, HeartbeatGrace: time.Second})
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	events, _, err := h.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		ev := nextEvent(t, events, 10*time.Second, func(e Event) bool { return e.Kind == Attached })
		if ev.Via != FoundWiFiDirect || ev.Transport != WiFi {
			t.Fatalf("event %+v; want wifi-direct", ev)
		}
		seen[ev.UDID] = true
	}
	if !seen[priv.UDID()] || !seen[plain.UDID()] {
		t.Fatalf("attached %v; want both devices", seen)
	}

	s, err := h.Open(ctx, priv.UDID())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.UDID != priv.UDID() || info.Transport != WiFi || info.Name != priv.Identity().DeviceName {
		t.Fatalf("info %+v", info)
	}
	afc, err := s.StartAFC(ctx) // a service over TCP with TLS, as lockdown says
	if err != nil {
		t.Fatal(err)
	}
	afc.Close()
	s.Close()
	for _, d := range devs {
		c := d.Counters()
		if c.MuxConnects != 0 || c.DirectConnects == 0 || c.Heartbeats != 1 {
			t.Fatalf("%s counters %+v; want direct connections only and one heartbeat", d.UDID(), c)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "a Polo", func() bool { return priv.Counters().Polos > 0 })

	b, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	var learnt struct {
		WiFi map[string]string `json:"wifi_addresses"`
	}
	if json.Unmarshal(b, &learnt) != nil || learnt.WiFi[priv.AnnouncedWiFiAddress()] != priv.UDID() {
		t.Fatalf("cache %s; want the private address learnt as %s", b, priv.UDID())
	}

	// The plain device walks out of range: no FIN, its heartbeat just stops. The Host
	// notices by the missing Marco and closes what it had open over that link.
	ps, err := h.Open(ctx, plain.UDID())
	if err != nil {
		t.Fatal(err)
	}
	pafc, err := ps.StartAFC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps.Close()
	plain.SetHeartbeatSilent(true)
	ev := nextEvent(t, events, 10*time.Second, func(e Event) bool { return e.Kind == Detached })
	if ev.UDID != plain.UDID() || !strings.Contains(ev.Reason, "no heartbeat") {
		t.Fatalf("event %+v; want %s detached for a missing heartbeat", ev, plain.UDID())
	}
	if _, err := pafc.Open(ctx, "/iTunes_Control/iTunes/iTunesPrefs"); err == nil {
		t.Fatal("an AFC connection over the lost link still works; it should have been closed")
	}
	pafc.Close()

	// The other device drops off Wi-Fi: its heartbeat connection is cut, the Host notices.
	if err := sim.SetTransports(priv.UDID(), false, false); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, events, 10*time.Second, func(e Event) bool { return e.Kind == Detached && e.UDID == priv.UDID() })
	if ev.Reason == "" {
		t.Fatalf("event %+v; want %s detached with a reason", ev, priv.UDID())
	}
	if _, err := h.OpenEntry(ctx, Entry{UDID: priv.UDID(), Via: FoundWiFiDirect}); err == nil {
		t.Fatal("a session opened with a device that left")
	}
	// And comes back at another address: found again, recognised by the learnt address.
	if err := sim.SetTransports(priv.UDID(), false, true); err != nil {
		t.Fatal(err)
	}
	// (The silent device, still advertising, may be found and lost again meanwhile.)
	nextEvent(t, events, 10*time.Second, func(e Event) bool { return e.Kind == Attached && e.UDID == priv.UDID() })
	e, err := h.Find(ctx, priv.UDID())
	if err != nil || !strings.HasPrefix(e.Addr, priv.WiFiAddr().String()+":") {
		t.Fatalf("Find = %+v, %v; want the new address %s", e, err, priv.WiFiAddr())
	}
	// The engine's Wi-Fi probe reaches a direct device without any mux.
	if err := Probe(ctx, e, 2*time.Second); err != nil {
		t.Fatalf("probe of a device found directly: %v", err)
	}
	if err := Probe(ctx, Entry{UDID: plain.UDID(), Via: FoundWiFiDirect, Addr: "127.0.0.1:9"}, time.Second); err == nil {
		t.Fatal("probe of an address nobody answers at succeeded")
	}
}

// TestAutoLeavesMuxListedWiFiDevicesToTheMux: when usbmuxd already lists a device over the
// network, auto discovery hears its advert but never connects to it directly, also when the
// advert's private address matches no pair record; sessions go through the mux.
func TestAutoLeavesMuxListedWiFiDevicesToTheMux(t *testing.T) {
	if !netnstest.Run(t) {
		return
	}
	sim, devs, records := wifiSim(t, []bool{false, true})
	t.Setenv("USBMUXD_SOCKET_ADDRESS", sim.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Control: the adverts are there and lead to the devices when nothing else serves them.
	control := NewHost(HostConfig{WiFi: WiFiBuiltin, PairRecordDir: records, BrowseWait: 2 * time.Second})
	list, err := control.List(ctx)
	control.Close()
	if err != nil || len(list) != 2 || list[0].Via != FoundWiFiDirect || list[1].Via != FoundWiFiDirect {
		t.Fatalf("builtin List = %+v, %v; want both devices found directly", list, err)
	}
	before := map[string]int64{}
	for _, d := range devs {
		before[d.UDID()] = d.Counters().DirectConnects
	}

	var logs syncBuf
	h := NewHost(HostConfig{WiFi: WiFiAuto, PairRecordDir: records, BrowseEvery: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer h.Close()
	wctx, wcancel := context.WithCancel(ctx)
	events, _, err := h.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the mux's two Attached events
		if ev := nextEvent(t, events, 5*time.Second, func(Event) bool { return true }); ev.Via != FoundWiFiMux {
			t.Fatalf("event %+v; want wifi-mux", ev)
		}
	}
	// Both adverts are heard (one by its address, one private) and left to the mux.
	testenv.WaitFor(t, 10*time.Second, "both adverts left to the mux", func() bool {
		return strings.Count(logs.String(), "wifi advert left to the mux") >= 2 &&
			strings.Contains(logs.String(), devicesim.MDNSInstanceName(devs[1].AnnouncedWiFiAddress()))
	})
	wcancel()
	list, err = h.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("auto List = %+v, %v", list, err)
	}
	for _, e := range list {
		if e.Via != FoundWiFiMux {
			t.Fatalf("entry %+v; want wifi-mux", e)
		}
	}
	s, err := h.Open(ctx, devs[1].UDID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Value(ctx, "", "DeviceName"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n := h.DirectDials(); n != 0 {
		t.Fatalf("auto discovery dialled %d lockdown connections to devices the mux lists", n)
	}
	for _, d := range devs {
		c := d.Counters()
		if c.DirectConnects != before[d.UDID()] {
			t.Fatalf("%s got %d direct connections in auto mode; want none", d.UDID(), c.DirectConnects-before[d.UDID()])
		}
	}
	if devs[1].Counters().MuxConnects == 0 {
		t.Fatal("the session did not go through the mux")
	}

	// mux mode never browses; off mode hides Wi-Fi devices altogether.
	for mode, want := range map[WiFiDiscovery]int{WiFiMux: 2, WiFiOff: 0} {
		h := NewHost(HostConfig{WiFi: mode, PairRecordDir: records})
		list, err := h.List(ctx)
		h.Close()
		if err != nil || len(list) != want {
			t.Fatalf("%s: List = %+v, %v; want %d entries", mode, list, err, want)
		}
	}
}

// syncBuf is the shared goroutine-safe log sink.
type syncBuf = testenv.Buffer
