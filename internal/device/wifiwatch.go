package device

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"snapback/internal/plistio"
)

const serviceHeartbeat = "com.apple.mobile.heartbeat"

// errNoHeartbeat: the device stopped sending Marco without closing the connection.
var errNoHeartbeat = errors.New("no heartbeat")

// quietAfterSilence is how long an advert whose device fell silent is left alone.
const quietAfterSilence = 60 * time.Second

// DirectDeviceID is the DeviceID of events and entries for devices found by built-in
// discovery (usbmuxd numbers its devices from 1).
const DirectDeviceID = -1

// startHeartbeat starts com.apple.mobile.heartbeat on the device and the goroutine that
// answers every Marco with a Polo. A device that stops sending Marco within its announced
// interval plus HeartbeatGrace, says SleepyTime, or whose connection breaks, is lost: the
// link is marked so and watchers get Detached. This is what platform muxes do for their
// network devices; iOS closes service connections of hosts that do not answer (the idevice
// crate's heartbeat.rs; netmuxd #14 shows what a late answer costs).
func (h *Host) startHeartbeat(ctx context.Context, l *wifiLink) error {
	s, err := h.dialSession(ctx, l.entry(), l.pair, nil)
	if err != nil {
		return err
	}
	c, err := s.StartService(ctx, serviceHeartbeat, false)
	s.Close()
	if err != nil {
		return fmt.Errorf("heartbeat of %s: %w", l.udid, err)
	}
	l.mu.Lock()
	l.hb = c
	l.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		stop := context.AfterFunc(h.ctx, func() { c.Close() })
		defer stop()
		err := h.heartbeat(c)
		c.Close()
		if h.ctx.Err() != nil {
			err = errors.New("host closed")
		}
		l.markLost(err)
		h.mu.Lock()
		if h.links[strings.ToUpper(l.udid)] == l {
			delete(h.links, strings.ToUpper(l.udid))
		}
		if errors.Is(err, errNoHeartbeat) {
			// Still advertised but silent: a Bonjour sleep proxy answering for a sleeping
			// device, or a device out of range whose records have not expired. Connecting
			// again at once would only flap; wait before adopting this advert again.
			h.quiet[l.instance+" "+l.addr] = time.Now().Add(quietAfterSilence)
		}
		h.mu.Unlock()
		h.log.Info("wifi device lost", "udid", l.udid, "addr", l.addr, "reason", err)
		h.publish(Event{Kind: Detached, UDID: l.udid, DeviceID: DirectDeviceID, Transport: WiFi, Via: FoundWiFiDirect, Reason: err.Error()})
	}()
	return nil
}

// heartbeat answers Marco with Polo until the link fails; it returns why.
func (h *Host) heartbeat(c net.Conn) error {
	wait := 30 * time.Second // until the first Marco tells the interval
	for {
		c.SetReadDeadline(time.Now().Add(wait + h.cfg.HeartbeatGrace))
		var m map[string]any
		if err := plistio.ReadPlist(c, 64<<10, &m); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("%w for %v", errNoHeartbeat, wait+h.cfg.HeartbeatGrace)
			}
			return fmt.Errorf("heartbeat connection: %w", err)
		}
		switch cmd, _ := m["Command"].(string); cmd {
		case "SleepyTime":
			return errors.New("the device went to sleep")
		case "Marco":
			if n, ok := plistio.Int(m["Interval"]); ok && n > 0 && n <= 3600 {
				wait = time.Duration(n) * time.Second
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := plistio.WritePlist(c, map[string]any{"Command": "Polo"}, plistio.XML); err != nil {
				return fmt.Errorf("heartbeat answer: %w", err)
			}
		default:
			return fmt.Errorf("unexpected heartbeat message %q", cmd)
		}
	}
}

// publish hands ev to every Watch of this Host. A watcher 64 events behind loses events
// rather than stall the heartbeat.
func (h *Host) publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.watchers {
		select {
		case ch <- ev:
		default:
			h.log.Warn("device watcher too slow; event dropped", "udid", ev.UDID, "kind", ev.Kind)
		}
	}
}

// Watch reports devices arriving and leaving on every path the mode allows: usbmuxd
// hotplug (USB, and the mux's network devices in auto and mux modes) and, in auto and
// builtin modes, devices found by browsing (every BrowseEvery) and lost by their
// heartbeat. In auto mode a device the mux lists is never also connected directly. The
// channel closes when ctx ends; the returned function then gives the mux error, if any.
func (h *Host) Watch(ctx context.Context) (<-chan Event, func() error, error) {
	if h == nil {
		return Watch(ctx)
	}
	out := make(chan Event, 64)
	direct := make(chan Event, 64)
	h.mu.Lock()
	h.watchers[direct] = struct{}{}
	h.mu.Unlock()

	var muxEvents <-chan Event
	var muxErr func() error
	ev, errf, err := Watch(ctx)
	switch {
	case err == nil:
		muxEvents, muxErr = ev, errf
	case !h.cfg.WiFi.browses():
		h.mu.Lock()
		delete(h.watchers, direct)
		h.mu.Unlock()
		return nil, nil, err
	default:
		h.log.Debug("usbmuxd not available; Wi-Fi discovery only", "err", err)
	}

	// What the mux lists is read afresh (at most once a second) when an advert needs
	// identifying, not tracked from its events: at start-up the browse can hear an advert
	// before the mux's first Attached events arrive, and would then connect twice.
	var listedAt time.Time
	var listed map[string]bool
	onMux := func() map[string]bool {
		if time.Since(listedAt) < time.Second && listed != nil {
			return listed
		}
		m := map[string]bool{}
		entries, err := h.muxEntries(ctx)
		if err != nil {
			h.log.Debug("usbmuxd list", "err", err)
		}
		for _, e := range entries {
			m[strings.ToUpper(e.UDID)] = true
		}
		listed, listedAt = m, time.Now()
		return m
	}

	var wg sync.WaitGroup
	if h.cfg.WiFi.browses() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range h.browse(ctx, h.cfg.BrowseEvery, min(time.Second, h.cfg.BrowseEvery)) {
				if _, err := h.adopt(ctx, a, "", nil, onMux); err != nil && !errors.Is(err, errNotThisOne) && ctx.Err() == nil {
					h.log.Info("wifi advert not usable", "instance", a.Instance, "addr", a.Addr, "err", err)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		defer func() {
			h.mu.Lock()
			delete(h.watchers, direct)
			h.mu.Unlock()
			wg.Wait()
		}()
		send := func(e Event) bool {
			select {
			case out <- e:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-direct:
				if !send(e) {
					return
				}
			case e, ok := <-muxEvents:
				if !ok {
					muxEvents = nil
					continue
				}
				if e.Transport == WiFi && !h.cfg.WiFi.usesMux() {
					continue
				}
				e.Via = FoundUSB
				if e.Transport == WiFi {
					e.Via = FoundWiFiMux
				}
				if !send(e) {
					return
				}
			}
		}
	}()
	return out, func() error {
		<-done
		if muxErr != nil {
			return muxErr()
		}
		return nil
	}, nil
}
