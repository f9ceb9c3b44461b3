package app

import (
	"context"
	"log/slog"
	"time"

	"snapback/internal/device"
	"snapback/jobs"
	"snapback/settings"
)

// Devices is the job manager's DeviceSource on top of usbmuxd hotplug events (no polling).
// A device reachable over USB and Wi-Fi is one device whose transport is USB; it is
// reported detached only when its last link goes.
type Devices struct {
	Logger *slog.Logger
	// RetryAfter is how long to wait before listening again when usbmuxd is not running or
	// its connection broke (default 5 s).
	RetryAfter time.Duration
	// InfoTimeout bounds the lockdown query for name and battery (default 10 s).
	InfoTimeout time.Duration
	// Host adds built-in Wi-Fi discovery (wifi_discovery); nil watches usbmuxd alone.
	Host *device.Host
}

// Events implements jobs.DeviceSource. The returned channel is closed when ctx ends; the
// goroutine that feeds it is owned by this call and stops with ctx.
func (d *Devices) Events(ctx context.Context) <-chan jobs.DeviceEvent {
	out := make(chan jobs.DeviceEvent, 16)
	go func() {
		defer close(out)
		retry := d.RetryAfter
		if retry <= 0 {
			retry = 5 * time.Second
		}
		links := map[string]map[int]device.Transport{} // UDID → usbmuxd DeviceID → transport
		for ctx.Err() == nil {
			d.watch(ctx, out, links)
			// Whatever usbmuxd said before is void now: every device is gone until it is
			// listed again.
			for udid := range links {
				send(ctx, out, jobs.DeviceEvent{UDID: udid, Attached: false})
				delete(links, udid)
			}
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
		}
	}()
	return out
}

func (d *Devices) watch(ctx context.Context, out chan<- jobs.DeviceEvent, links map[string]map[int]device.Transport) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errf, err := d.Host.Watch(wctx)
	if err != nil {
		d.log().Debug("usbmuxd not available", "err", err)
		return
	}
	byID := map[int]string{}
	for ev := range events {
		switch ev.Kind {
		case device.Attached:
			if ev.UDID == "" {
				continue
			}
			byID[ev.DeviceID] = ev.UDID
			if links[ev.UDID] == nil {
				links[ev.UDID] = map[int]device.Transport{}
			}
			links[ev.UDID][ev.DeviceID] = ev.Transport
			send(ctx, out, d.describe(ctx, ev.UDID, preferred(links[ev.UDID])))
		case device.Detached:
			udid := ev.UDID
			if udid == "" {
				udid = byID[ev.DeviceID]
			}
			delete(byID, ev.DeviceID)
			if links[udid] == nil {
				continue
			}
			delete(links[udid], ev.DeviceID)
			if len(links[udid]) == 0 {
				delete(links, udid)
				send(ctx, out, jobs.DeviceEvent{UDID: udid, Attached: false})
				continue
			}
			send(ctx, out, d.describe(ctx, udid, preferred(links[udid])))
		}
	}
	if err := errf(); err != nil && ctx.Err() == nil {
		d.log().Warn("usbmuxd connection lost", "err", err)
	}
}

// describe reads name and battery over lockdown. A device that cannot be asked (locked
// before first unlock, trust dialog pending) is still reported, by UDID.
func (d *Devices) describe(ctx context.Context, udid string, t device.Transport) jobs.DeviceEvent {
	ev := jobs.DeviceEvent{UDID: udid, Attached: true, Transport: toSettingsTransport(t), Battery: -1}
	timeout := d.InfoTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := d.Host.Open(ictx, udid)
	if err != nil {
		d.log().Info("device attached but not readable", "udid", udid, "err", err)
		// Not trusted yet: its name is public, and the Trust notification needs it.
		if e, ferr := device.Find(ictx, udid); ferr == nil {
			ev.Name, _ = device.PublicName(ictx, e)
		}
		return ev
	}
	defer s.Close()
	info, err := s.Info(ictx)
	if err != nil {
		d.log().Info("device info unavailable", "udid", udid, "err", err)
		return ev
	}
	ev.Name, ev.Battery, ev.Charging = info.Name, info.BatteryLevel, info.Charging
	return ev
}

func (d *Devices) log() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// preferred picks USB over Wi-Fi: faster, and it works without Wi-Fi sync enabled.
func preferred(links map[int]device.Transport) device.Transport {
	t := device.WiFi
	for _, l := range links {
		if l == device.USB {
			return device.USB
		}
	}
	return t
}

func toSettingsTransport(t device.Transport) settings.Transport {
	if t == device.WiFi {
		return settings.TransportWiFi
	}
	return settings.TransportUSB
}

func send(ctx context.Context, out chan<- jobs.DeviceEvent, ev jobs.DeviceEvent) {
	select {
	case out <- ev:
	case <-ctx.Done():
	}
}
