package app

import (
	"context"
	"sync"

	"snapback/internal/failure"
	"snapback/tray"
)

// WiFiSync remembers, per device, whether Wi-Fi sync (lockdown EnableWifiConnections) is on: read
// once when the device attaches (one cheap GetValue, never polled) and updated when the tray
// switches it. A device not read yet is unknown, and the tray leaves its switch out.
type WiFiSync struct {
	mu sync.Mutex
	on map[string]bool
}

// trayWiFiSync is the tray's view of a remembered state (absent: unknown).
func trayWiFiSync(states map[string]bool, udid string) tray.WiFiSync {
	on, ok := states[udid]
	switch {
	case !ok:
		return tray.WiFiSyncUnknown
	case on:
		return tray.WiFiSyncOn
	}
	return tray.WiFiSyncOff
}

// Snapshot copies the remembered states for a tray state.
func (w *WiFiSync) Snapshot() map[string]bool {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]bool, len(w.on))
	for k, v := range w.on {
		out[k] = v
	}
	return out
}

// Set records the state read from (or written to) udid.
func (w *WiFiSync) Set(udid string, on bool) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.on == nil {
		w.on = map[string]bool{}
	}
	w.on[udid] = on
}

// SetWiFiSync switches the device's Wi-Fi sync through the same device call as `snapback wifi`
// and records what the device reports back; a failure raises CommandFailed.
func (c *Controller) SetWiFiSync(udid string, on bool) {
	what := "switch Wi-Fi sync off"
	if on {
		what = "switch Wi-Fi sync on"
	}
	c.do(what, func(ctx context.Context) error {
		h := c.deviceHost()
		e, err := h.Find(ctx, udid)
		if err != nil {
			return failure.New(failure.NotConnected, err)
		}
		got, err := h.SwitchWifi(ctx, e, &on)
		if err != nil {
			return err
		}
		c.WiFi.Set(udid, got)
		return nil
	})
}
