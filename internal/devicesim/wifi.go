package devicesim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"
)

// Wi-Fi direct mode. libimobiledevice does not use usbmuxd Connect for Network entries: it
// opens a TCP connection to the address in NetworkAddress, port 62078 and later the
// StartService ports (protocol.md §9). So a device attached over Wi-Fi also listens on a
// loopback address of its own: a random 127.x.y.z, which keeps parallel simulators (and
// test processes) from fighting over port 62078.

// directNet is the device's own loopback listener state; guarded by Sim.mu.
type directNet struct {
	ip       net.IP
	lockdown net.Listener
}

// startDirectLocked opens the device's lockdownd listener for Wi-Fi clients. On failure the
// Network entry is still announced (mux Connect works), only direct TCP does not.
func (s *Sim) startDirectLocked(d *Device, entryID int) {
	if d.direct != nil {
		return
	}
	for range 8 {
		var b [3]byte
		rand.Read(b[:])
		ip := net.IPv4(127, 1+b[0]%253, b[1], 1+b[2]%253)
		l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), fmt.Sprint(LockdownPort)))
		if err != nil {
			continue
		}
		dn := &directNet{ip: ip.To4(), lockdown: l}
		d.mu.Lock()
		d.direct = dn
		d.mu.Unlock()
		s.direct[l] = struct{}{}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.acceptDirect(l, d, entryID, func(net.Conn) func(context.Context, net.Conn) { return d.serveLockdown }, 0)
		}()
		if err := s.announceLocked(d); err != nil {
			s.log.Warn("devicesim: mDNS announcement", "err", err)
		}
		return
	}
	s.log.Warn("devicesim: no loopback address free for Wi-Fi direct mode", "udid", d.UDID())
}

func (s *Sim) stopDirectLocked(d *Device) {
	d.mu.Lock()
	dn := d.direct
	d.direct = nil
	d.mu.Unlock()
	s.unannounceLocked(d)
	if dn != nil {
		dn.lockdown.Close()
		delete(s.direct, dn.lockdown)
	}
}

// networkAddress is the NetworkAddress of a Network entry: a BSD sockaddr_in (sa_len 16,
// AF_INET 2, port 0, address) — the only layout libimobiledevice 1.3.0 understands; byte 0
// must be non-zero.
func (d *Device) networkAddress() []byte {
	ip := net.IPv4(127, 0, 0, 1).To4()
	d.mu.Lock()
	if d.direct != nil {
		ip = d.direct.ip
	}
	d.mu.Unlock()
	b := []byte{0x10, 0x02, 0, 0}
	b = append(b, ip...)
	return append(b, make([]byte, 8)...)
}

// listenService opens a one-shot listener for a started service in direct mode and
// returns its port, or 0 when the device has no direct address.
func (d *Device) listenService() (net.Listener, uint16) {
	d.mu.Lock()
	dn := d.direct
	d.mu.Unlock()
	if dn == nil {
		return nil, 0
	}
	l, err := net.Listen("tcp", net.JoinHostPort(dn.ip.String(), "0"))
	if err != nil {
		d.sim.log.Debug("service listener", "udid", d.UDID(), "err", err)
		return nil, 0
	}
	return l, uint16(l.Addr().(*net.TCPAddr).Port)
}

// serveServiceListener accepts the single direct connection of a started service port,
// unless a usbmuxd Connect claims the port first or it expires.
func (s *Sim) serveServiceListener(l net.Listener, d *Device, port uint16) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return
	}
	s.direct[l] = struct{}{}
	entryID := d.wifiID
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if tl, ok := l.(*net.TCPListener); ok {
			tl.SetDeadline(time.Now().Add(pendingTTL))
		}
		s.acceptDirect(l, d, entryID, func(net.Conn) func(context.Context, net.Conn) { return d.claim(port) }, 1)
	}()
}

// acceptDirect serves connections from l (at most limit, 0 = unlimited) as pipes to entry
// entryID of d. pick chooses the handler; nil refuses the connection.
func (s *Sim) acceptDirect(l net.Listener, d *Device, entryID int, pick func(net.Conn) func(context.Context, net.Conn), limit int) {
	defer func() {
		l.Close()
		s.mu.Lock()
		delete(s.direct, l)
		s.mu.Unlock()
	}()
	for n := 0; limit == 0 || n < limit; n++ {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Debug("direct accept", "udid", d.UDID(), "err", err)
			}
			return
		}
		served := s.serve(c, nil, func() {
			handler := pick(c)
			if handler == nil {
				return
			}
			ctx, cancel, ok := s.route(c, d, entryID)
			if !ok {
				return
			}
			defer cancel()
			d.counters.directConnects.Add(1)
			handler(ctx, c)
		})
		if !served {
			return
		}
	}
}
