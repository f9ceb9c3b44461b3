package devicesim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"snapback/internal/plistio"
)

// npMaxFrame bounds a notification_proxy request; real ones are a few hundred bytes.
const npMaxFrame = 64 << 10

// npWriteTimeout bounds a relay to one observer so a stalled host cannot hold up a post.
const npWriteTimeout = 5 * time.Second

// npHub is the notification_proxy of one device: which connection observes which name.
type npHub struct {
	mu    sync.Mutex
	conns map[*npConn]struct{}
}

type npConn struct {
	rw       io.ReadWriter
	wmu      sync.Mutex          // serialises writes from the connection and from posters
	observes map[string]struct{} // guarded by npHub.mu
}

func newNPHub() *npHub { return &npHub{conns: map[*npConn]struct{}{}} }

// write sends one message, with a deadline when the transport supports it.
func (c *npConn) write(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if dl, ok := c.rw.(interface{ SetWriteDeadline(time.Time) error }); ok {
		dl.SetWriteDeadline(time.Now().Add(npWriteTimeout))
		defer dl.SetWriteDeadline(time.Time{})
	}
	return plistio.WritePlist(c.rw, v, plistio.XML)
}

// post relays name to every observing connection and returns how many got it.
func (h *npHub) post(name string) int {
	h.mu.Lock()
	var targets []*npConn
	for c := range h.conns {
		if _, ok := c.observes[name]; ok {
			targets = append(targets, c)
		}
	}
	h.mu.Unlock()
	n := 0
	for _, c := range targets {
		if err := c.write(map[string]any{"Command": "RelayNotification", "Name": name}); err == nil {
			n++
		} else if cl, ok := c.rw.(io.Closer); ok {
			cl.Close() // a host that cannot take a relay is gone or stuck: cut it
		}
	}
	return n
}

// observers counts the connections observing name.
func (h *npHub) observers(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for c := range h.conns {
		if _, ok := c.observes[name]; ok {
			n++
		}
	}
	return n
}

// decodeNPRequest parses a notification_proxy request into its Command and Name.
func decodeNPRequest(frame []byte) (cmd, name string, err error) {
	var m map[string]any
	if err := plistio.Unmarshal(frame, &m); err != nil {
		return "", "", fmt.Errorf("notification_proxy: %w", err)
	}
	cmd, ok := m["Command"].(string)
	if !ok {
		return "", "", errors.New("notification_proxy: request without Command")
	}
	name, _ = m["Name"].(string)
	return cmd, name, nil
}

// serve runs one notification_proxy connection.
func (h *npHub) serve(ctx context.Context, d *Device, rw io.ReadWriter) error {
	c := &npConn{rw: rw, observes: map[string]struct{}{}}
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
	}()
	for ctx.Err() == nil {
		frame, err := plistio.ReadFrame(rw, npMaxFrame)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		cmd, name, err := decodeNPRequest(frame)
		if err != nil {
			return err
		}
		switch cmd {
		case "ObserveNotification":
			if name != "" {
				h.mu.Lock()
				c.observes[name] = struct{}{}
				h.mu.Unlock()
			}
		case "PostNotification":
			if name != "" {
				d.Post(name)
			}
		case "Shutdown":
			// libimobiledevice waits up to 30 s for this before giving up.
			return c.write(map[string]any{"Command": "ProxyDeath"})
		}
	}
	return ctx.Err()
}
