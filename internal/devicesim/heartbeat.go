package devicesim

import (
	"context"
	"fmt"
	"io"
	"time"

	"snapback/internal/plistio"
)

// com.apple.mobile.heartbeat keeps a Wi-Fi link alive: the device sends
// {Command: Marco, Interval: N} every N seconds and the host answers {Command: Polo}; a
// device going to sleep sends {Command: SleepyTime} instead (pymobiledevice3 heartbeat.py;
// the idevice crate's heartbeat.rs). A host that does not answer in time loses the link:
// netmuxd's "Heartbeat failed … Removing device" (netmuxd #14, #10) is the host side of
// this. The simulator closes the heartbeat connection when no Polo arrives within the
// interval plus a grace period.

const serviceHeartbeat = "com.apple.mobile.heartbeat"

// DefaultHeartbeatInterval is the Marco interval when Options.HeartbeatInterval is 0.
const DefaultHeartbeatInterval = 10 * time.Second

func (s *Sim) heartbeatInterval() time.Duration {
	if s.opts.HeartbeatInterval > 0 {
		return s.opts.HeartbeatInterval
	}
	return DefaultHeartbeatInterval
}

// serveHeartbeat runs the Marco/Polo loop until the host fails to answer, the connection
// ends or ctx does (detach, simulator closed).
func (d *Device) serveHeartbeat(ctx context.Context, rw io.ReadWriter) error {
	d.counters.heartbeats.Add(1)
	interval := d.sim.heartbeatInterval()
	secs := max(int(interval/time.Second), 1)
	type deadliner interface{ SetReadDeadline(time.Time) error }
	polo := make(chan error, 1)
	for {
		for d.hbSilent.Load() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(interval / 4):
			}
		}
		if err := plistio.WritePlist(rw, map[string]any{"Command": "Marco", "Interval": secs}, plistio.XML); err != nil {
			return err
		}
		if dl, ok := rw.(deadliner); ok {
			dl.SetReadDeadline(time.Now().Add(interval + interval/2 + time.Second))
		}
		go func() {
			var m map[string]any
			err := plistio.ReadPlist(rw, 64<<10, &m)
			if err == nil && m["Command"] != "Polo" {
				err = fmt.Errorf("heartbeat: expected Polo, got %v", m["Command"])
			}
			polo <- err
		}()
		select {
		case err := <-polo:
			if err != nil {
				return err
			}
			d.counters.polos.Add(1)
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// SetHeartbeatSilent makes the device stop (or resume) sending Marco while keeping every
// connection open: a phone that walked out of Wi-Fi range, whose connections end without
// a FIN. A host notices only by the missing heartbeat.
func (d *Device) SetHeartbeatSilent(silent bool) { d.hbSilent.Store(silent) }
