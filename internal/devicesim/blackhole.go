package devicesim

import (
	"net"
	"sync"
)

// A Wi-Fi link that dies without a word: the phone walks out of range or its radio sleeps
// (real-devices.md row 7: "the link drops when the phone sleeps"; netmuxd #14, #57 and
// usbmuxd2 #20 discuss devices that vanish from the network with connections left open).
// No FIN, no RST: the host's socket (to usbmuxd) stays open and simply goes quiet, and new
// connections to the device are refused. A host that waits without a bound hangs forever;
// a host that uses an inactivity timeout cannot tell this from a long device-side scan.

// blackhole is the per-device switch. While on, every routed connection stops moving data
// in both directions (reads and writes block) and Connect is refused.
type blackhole struct {
	mu   sync.Mutex
	on   bool
	wake chan struct{} // closed when the hole closes again
}

// DropLinkSilently makes the device unreachable without closing anything (on = true), or
// reachable again (on = false; stalled connections resume).
func (d *Device) DropLinkSilently(on bool) {
	d.hole.mu.Lock()
	defer d.hole.mu.Unlock()
	if on == d.hole.on {
		return
	}
	d.hole.on = on
	if on {
		d.hole.wake = make(chan struct{})
	} else {
		close(d.hole.wake)
	}
}

// stalled returns the channel to wait on while the link is dead, or nil.
func (d *Device) stalled() chan struct{} {
	d.hole.mu.Lock()
	defer d.hole.mu.Unlock()
	if !d.hole.on {
		return nil
	}
	return d.hole.wake
}

// holeConn is a routed connection that stalls while the device's link is dead. done ends
// a stall when the connection is torn down.
type holeConn struct {
	net.Conn
	d    *Device
	done <-chan struct{}
}

func (c *holeConn) wait() error {
	if ch := c.d.stalled(); ch != nil {
		select {
		case <-ch:
		case <-c.done:
			return net.ErrClosed
		}
	}
	return nil
}

func (c *holeConn) Read(p []byte) (int, error) {
	if err := c.wait(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if err == nil {
		// Data that arrived as the link died is lost with it.
		if werr := c.wait(); werr != nil {
			return 0, werr
		}
	}
	return n, err
}

func (c *holeConn) Write(p []byte) (int, error) {
	if err := c.wait(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
