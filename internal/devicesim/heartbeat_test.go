package devicesim

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"snapback/internal/plistio"
)

// TestHeartbeatMarcoPoloAndSilentHost: the device sends Marco with its interval; a host
// that answers Polo keeps the connection, one that stays silent loses it.
func TestHeartbeatMarcoPoloAndSilentHost(t *testing.T) {
	sim := startSim(t, Options{HeartbeatInterval: 200 * time.Millisecond})
	d := addDevice(t, sim, DeviceConfig{WiFi: true})
	open := func() *tls.Conn {
		l := dialLockdown(t, sim, d)
		rec := d.PairRecord()
		l.startSession(rec.RootCertificate, rec.RootPrivateKey)
		r := l.call(map[string]any{"Request": "StartService", "Service": serviceHeartbeat})
		port, ok := plistio.Int(r["Port"])
		if !ok || r["EnableServiceSSL"] != true {
			t.Fatalf("StartService heartbeat = %v", r)
		}
		usb, wifi := d.DeviceIDs()
		c := dialMux(t, sim).connect(max(usb, wifi), uint16(port))
		cert, _ := tls.X509KeyPair(rec.HostCertificate, rec.HostPrivateKey)
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		return tc
	}
	marco := func(c net.Conn) error {
		var m map[string]any
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := plistio.ReadPlist(c, 1<<16, &m); err != nil {
			return err
		}
		if n, _ := plistio.Int(m["Interval"]); m["Command"] != "Marco" || n < 1 {
			t.Fatalf("heartbeat message %v; want Marco with an interval", m)
		}
		return nil
	}

	good := open()
	for range 3 {
		if err := marco(good); err != nil {
			t.Fatal(err)
		}
		if err := plistio.WritePlist(good, map[string]any{"Command": "Polo"}, plistio.XML); err != nil {
			t.Fatal(err)
		}
	}
	if err := marco(good); err != nil { // sent after the third Polo was taken
		t.Fatal(err)
	}
	if c := d.Counters(); c.Heartbeats != 1 || c.Polos != 3 {
		t.Fatalf("counters %+v; want 1 heartbeat and 3 Polos", c)
	}

	silent := open()
	if err := marco(silent); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	err := plistio.ReadPlist(silent, 1<<16, &m)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("silent host: read %v, %v; want the device to close the heartbeat", m, err)
	}
}

func TestPrivateWiFiAddressAndInstanceName(t *testing.T) {
	id := DefaultIdentity(0)
	p := PrivateWiFiAddress(id.UDID)
	hw, err := net.ParseMAC(p)
	if err != nil || hw[0]&0x02 == 0 || hw[0]&0x01 != 0 || p == id.WiFiAddress {
		t.Fatalf("private address %q: want a locally administered unicast address unlike %s", p, id.WiFiAddress)
	}
	if p != PrivateWiFiAddress(id.UDID) {
		t.Fatal("private address is not stable for one device")
	}
	if got := MDNSInstanceName("a4:c3:61:5a:00:01"); got != "a4:c3:61:5a:00:01@fe80::a6c3:61ff:fe5a:1" {
		t.Fatalf("instance name %q", got)
	}
}
