package device

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/mdns"
)

func TestParseAnnouncement(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    mdns.ServiceEntry
		ok   bool
		want announcement
	}{
		{"escaped as miekg/dns presents it", mdns.ServiceEntry{Name: `A4:C3:61:5A:00:01\@fe80::a6c3:61ff:fe5a:1._apple-mobdev2._tcp.local.`,
			AddrV4: net.IPv4(192, 168, 1, 20), Port: 62078}, true,
			announcement{Instance: "A4:C3:61:5A:00:01@fe80::a6c3:61ff:fe5a:1", MAC: "a4:c3:61:5a:00:01", Addr: "192.168.1.20:62078"}},
		{"IPv6 link-local keeps its zone", mdns.ServiceEntry{Name: `de:ad:be:ef:00:02@fe80::1._apple-mobdev2._tcp.local.`,
			AddrV6IPAddr: &net.IPAddr{IP: net.ParseIP("fe80::1"), Zone: "wlan0"}, Port: 62078}, true,
			announcement{Instance: "de:ad:be:ef:00:02@fe80::1", MAC: "de:ad:be:ef:00:02", Addr: "[fe80::1%wlan0]:62078"}},
		{"public address refused", mdns.ServiceEntry{Name: `x@y._apple-mobdev2._tcp.local.`, AddrV4: net.IPv4(8, 8, 8, 8), Port: 62078}, false, announcement{}},
		{"no address", mdns.ServiceEntry{Name: `x@y._apple-mobdev2._tcp.local.`, Port: 62078}, false, announcement{}},
		{"foreign service", mdns.ServiceEntry{Name: `printer._ipp._tcp.local.`, AddrV4: net.IPv4(10, 0, 0, 1), Port: 631}, false, announcement{}},
		{"bad port", mdns.ServiceEntry{Name: `x@y._apple-mobdev2._tcp.local.`, AddrV4: net.IPv4(10, 0, 0, 1), Port: 70000}, false, announcement{}},
		{"instance without a MAC", mdns.ServiceEntry{Name: `not-a-mac\@x._apple-mobdev2._tcp.local.`, AddrV4: net.IPv4(10, 0, 0, 1), Port: 62078}, true,
			announcement{Instance: "not-a-mac@x", Addr: "10.0.0.1:62078"}},
	} {
		got, ok := parseAnnouncement(&tc.e)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if got := unescapeDNS(`a\.b\064c\\`); got != `a.b@c\` {
		t.Errorf("unescapeDNS = %q", got)
	}
}

func TestParseWiFiDiscoveryAndReasons(t *testing.T) {
	for in, want := range map[string]WiFiDiscovery{"": WiFiAuto, "AUTO": WiFiAuto, " builtin ": WiFiBuiltin, "mux": WiFiMux, "off": WiFiOff} {
		if got, err := ParseWiFiDiscovery(in); err != nil || got != want {
			t.Errorf("ParseWiFiDiscovery(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseWiFiDiscovery("bonjour"); err == nil || !strings.Contains(err.Error(), "auto, builtin, mux or off") {
		t.Errorf("bad mode error: %v", err)
	}
	for _, tc := range []struct {
		mode          WiFiDiscovery
		muxUp, learnt bool
		want          string
	}{
		{WiFiOff, true, false, "wifi_discovery: off"},
		{WiFiMux, false, false, "usbmuxd not running"},
		{WiFiMux, true, false, "wifi_discovery: mux"},
		{WiFiAuto, true, false, "Show this iPhone when on Wi-Fi"},
		{WiFiBuiltin, false, true, "seen on Wi-Fi before"},
	} {
		if got := UnreachableReason(tc.mode, tc.muxUp, tc.learnt, 3*time.Second); !strings.Contains(got, tc.want) {
			t.Errorf("%+v: %q lacks %q", tc, got, tc.want)
		}
	}
}
