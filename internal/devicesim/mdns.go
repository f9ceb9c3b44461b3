package devicesim

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"snapback/internal/lockdown"
	"strings"

	"github.com/hashicorp/mdns"
)

// mDNS announcement of Wi-Fi devices, as real iPhones do when "Show this iPhone when on
// Wi-Fi" is on: a Bonjour service _apple-mobdev2._tcp whose instance name is
// "<wifi-mac>@<link-local IPv6>" and whose SRV points at lockdownd (62078) on the device's
// own address (protocol.md §9; real-devices.md row 7; netmuxd #56 shows a real
// avahi-browse of it). The simulator answers queries for it on one interface for every
// device whose Wi-Fi direct listener is up, so a host that browses finds exactly the
// devices it can connect to; a device dropping off Wi-Fi stops answering at once.

// MDNSService is the Bonjour service type of network-reachable iOS devices.
const MDNSService = "_apple-mobdev2._tcp"

// mdnsState is the announcer; guarded by Sim.mu.
type mdnsState struct {
	iface   *net.Interface // nil = the system's default multicast interface
	servers map[*Device]*mdns.Server
}

// StartMDNS announces every Wi-Fi device over mDNS on the interface named iface ("" = the
// system's default multicast route), now and whenever one attaches over Wi-Fi later. Only
// use it on loopback or inside a network namespace of its own: the records carry
// simulated devices that real hosts on the network would try to reach.
func (s *Sim) StartMDNS(iface string) error {
	var ifi *net.Interface
	if iface != "" {
		var err error
		if ifi, err = net.InterfaceByName(iface); err != nil {
			return fmt.Errorf("devicesim: mDNS interface: %w", err)
		}
		if ifi.Flags&net.FlagMulticast == 0 {
			return fmt.Errorf("devicesim: interface %s has multicast off (ip link set %s multicast on)", iface, iface)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("devicesim: simulator closed")
	}
	if s.mdns != nil {
		return fmt.Errorf("devicesim: mDNS already started")
	}
	s.mdns = &mdnsState{iface: ifi, servers: map[*Device]*mdns.Server{}}
	var errs []string
	for _, d := range s.devices {
		if err := s.announceLocked(d); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("devicesim: mDNS: %s", strings.Join(errs, "; "))
	}
	return nil
}

// announceLocked starts answering for d if mDNS is on and d is reachable over Wi-Fi.
func (s *Sim) announceLocked(d *Device) error {
	if s.mdns == nil || s.mdns.servers[d] != nil {
		return nil
	}
	d.mu.Lock()
	dn := d.direct
	d.mu.Unlock()
	if dn == nil {
		return nil
	}
	mac := d.AnnouncedWiFiAddress()
	host := fmt.Sprintf("iPhone-%s.local.", strings.ToLower(stripDash(d.UDID())[len(stripDash(d.UDID()))-6:]))
	// TXT keys as real adverts carry them; their values validate against nothing a host
	// holds (pymobiledevice3 PR #1971), so they are opaque here too.
	sum := sha256.Sum256([]byte("mdns-txt:" + d.UDID()))
	txt := []string{"identifier=" + lockdown.NewUUID(), "authTag=" + base64.StdEncoding.EncodeToString(sum[:16])}
	zone, err := mdns.NewMDNSService(MDNSInstanceName(mac), MDNSService, "local.", host, LockdownPort,
		[]net.IP{dn.ip}, txt)
	if err != nil {
		return fmt.Errorf("%s: %w", d.UDID(), err)
	}
	srv, err := mdns.NewServer(&mdns.Config{Zone: zone, Iface: s.mdns.iface, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		return fmt.Errorf("%s: %w", d.UDID(), err)
	}
	s.mdns.servers[d] = srv
	s.log.Debug("mDNS announcing", "udid", d.UDID(), "instance", MDNSInstanceName(mac), "addr", dn.ip)
	return nil
}

// unannounceLocked stops answering for d.
func (s *Sim) unannounceLocked(d *Device) {
	if s.mdns == nil {
		return
	}
	if srv := s.mdns.servers[d]; srv != nil {
		srv.Shutdown()
		delete(s.mdns.servers, d)
	}
}

func (s *Sim) stopMDNSLocked() {
	if s.mdns == nil {
		return
	}
	for d := range s.mdns.servers {
		s.unannounceLocked(d)
	}
}

// MDNSInstanceName is the instance name a device with Wi-Fi address mac announces:
// "<mac>@<fe80 EUI-64 address of mac>", as real devices do.
func MDNSInstanceName(mac string) string {
	return mac + "@" + linkLocalOf(mac)
}

// linkLocalOf derives the EUI-64 link-local IPv6 address of a MAC (RFC 4291 appendix A).
func linkLocalOf(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "fe80::1"
	}
	ip := net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, hw[0] ^ 0x02, hw[1], hw[2], 0xff, 0xfe, hw[3], hw[4], hw[5]}
	return ip.String()
}

// PrivateWiFiAddress returns the private ("randomized") Wi-Fi address a device with this
// UDID uses on the simulated network: locally administered (bit 0x02 of the first octet),
// unicast, and unrelated to the hardware address in the pair record. Since iOS 26.4 this is
// what devices announce, so matching adverts to pair records by WiFiMACAddress misses them
// (netmuxd #56 and #57, an iMazing developer confirming there; pymobiledevice3 PR #1971).
func PrivateWiFiAddress(udid string) string {
	sum := sha256.Sum256([]byte("private-wifi:" + udid))
	sum[0] = sum[0]&^0x01 | 0x02
	return net.HardwareAddr(sum[:6]).String()
}

// AnnouncedWiFiAddress is the Wi-Fi address the device uses on the network: its
// DeviceConfig.AnnouncedWiFiAddress, else its hardware Identity.WiFiAddress.
func (d *Device) AnnouncedWiFiAddress() string {
	if d.cfg.AnnouncedWiFiAddress != "" {
		return d.cfg.AnnouncedWiFiAddress
	}
	return d.cfg.Identity.WiFiAddress
}

// WiFiAddr is the IP address the device is reachable at over Wi-Fi (its own loopback
// address), or nil while it is not on Wi-Fi.
func (d *Device) WiFiAddr() net.IP {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.direct == nil {
		return nil
	}
	return append(net.IP(nil), d.direct.ip...)
}
