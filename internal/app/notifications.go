package app

import (
	"context"
	"log/slog"
	"time"

	"snapback/jobs"
	"snapback/notify"
	"snapback/settings"
)

// eventMask is what the notification forwarder listens to.
const eventMask = jobs.EventTrustRequested | jobs.EventDeviceAttached | jobs.EventRunStarted | jobs.EventPasscodeRequested |
	jobs.EventRunFinished | jobs.EventRunFailed | jobs.EventOverdue | jobs.EventApprovalNeeded |
	jobs.EventSettingsInvalid | jobs.EventSettingsReloaded

// Notifications turns engine events into desktop notifications, as the settings allow.
// Rate limiting and de-duplication are notify.Gate's job; this only decides what to say.
type Notifications struct {
	Bus *jobs.Bus
	// Status returns the engine's current status (Manager.Status); it tells the transport
	// of a run for the completion message.
	Status   func() jobs.Status
	Notifier notify.Notifier
	Settings func() *settings.Settings
	// SettingsPath names the settings file in the "settings broken" message.
	SettingsPath string
	// Location returns where a device's backups go, for the "disk not connected" message.
	Location func(udid string) string
	// Size returns the size of a device's latest backup, for the "completed" message.
	Size   func(udid string) int64
	Logger *slog.Logger
	// AllKinds ignores the desktop switches of `notifications:`; push channels filter by
	// their own `events:` list instead.
	AllKinds bool
}

// runInfo remembers what the completion message needs about a run in progress.
type runInfo struct {
	started   time.Time
	transport settings.Transport
}

// Run forwards events until ctx ends. It owns its subscription.
func (n *Notifications) Run(ctx context.Context) {
	sub := n.Bus.Subscribe(eventMask)
	defer sub.Close()
	transports := map[string]settings.Transport{}
	for _, d := range sub.Initial.Devices {
		transports[d.UDID] = d.Transport
	}
	runs := map[string]runInfo{}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			switch ev.Type {
			case jobs.EventDeviceAttached:
				// The attach event carries no transport; the status snapshot does.
				if d, ok := n.Status().Device(ev.UDID); ok {
					transports[ev.UDID] = d.Transport
				}
			case jobs.EventRunStarted:
				runs[ev.UDID] = runInfo{started: ev.Time, transport: transports[ev.UDID]}
			default:
				if msg, ok := n.message(ev, runs[ev.UDID]); ok {
					if err := n.Notifier.Notify(msg); err != nil && n.Logger != nil {
						n.Logger.Warn("notification not shown", "kind", msg.Kind, "err", err)
					}
				}
			}
		}
	}
}

// message decides whether and what to notify for one event. Pure apart from the settings,
// location and size lookups it is given.
func (n *Notifications) message(ev jobs.Event, run runInfo) (notify.Message, bool) {
	dev := notify.Device{UDID: ev.UDID, Name: ev.Name}
	if dev.Name == "" {
		dev.Name = ev.UDID
	}
	var on settings.Notifications
	if s := n.Settings(); s != nil {
		on = s.Effective(ev.UDID).Notifications
	}
	if n.AllKinds {
		on = settings.Notifications{Passcode: true, Completed: true, Failed: true, DiskMissing: true, Overdue: true, Approval: true}
	}
	switch ev.Type {
	case jobs.EventTrustRequested:
		return notify.Trust(dev), on.Passcode
	case jobs.EventPasscodeRequested:
		return notify.Passcode(dev), on.Passcode
	case jobs.EventRunFinished:
		var size int64
		if n.Size != nil {
			size = n.Size(ev.UDID)
		}
		took := time.Duration(0)
		if !run.started.IsZero() {
			took = ev.Time.Sub(run.started)
		}
		msg := notify.Done(dev, size, took, notifyTransport(run.transport))
		if ev.Unreadable > 0 {
			msg.Body += " " + UnreadableText(ev.Unreadable) + "."
		}
		return msg, on.Completed
	case jobs.EventRunFailed:
		switch ev.Result {
		case jobs.ResultCancelled:
			return notify.Message{}, false // the user did it; telling them is noise
		case jobs.ResultDeviceGone:
			// The cable was pulled or the Wi-Fi link dropped: the run is retried as soon as
			// the device is back, and the overdue reminder speaks up if it never is. A
			// notification for every dropped link would be noise.
			return notify.Message{}, false
		case jobs.ResultDiskMissing:
			loc := ""
			if n.Location != nil {
				loc = n.Location(ev.UDID)
			}
			return notify.NoDisk(dev, loc), on.DiskMissing
		}
		remedy := ev.Remedy
		if remedy == "" {
			remedy = remedyFor(ev.Result)
		}
		return notify.Failure(dev, ev.Err, remedy), on.Failed
	case jobs.EventOverdue:
		return notify.IsOverdue(dev, ev.OverdueDays), on.Overdue
	case jobs.EventApprovalNeeded:
		if ev.Approval == nil {
			return notify.Message{}, false
		}
		return notify.Approval(dev, ev.Approval.Snapshots, ev.Approval.Bytes), on.Approval
	case jobs.EventSettingsInvalid:
		return notify.BrokenSettings(n.SettingsPath, ev.Err), true
	case jobs.EventSettingsReloaded:
		if g, ok := n.Notifier.(interface{ SettingsFixed() }); ok {
			g.SettingsFixed()
		}
	}
	return notify.Message{}, false
}

// remedyFor says what the user can do about a failure class the engine's own message does
// not already explain.
func remedyFor(r jobs.Result) string {
	switch r {
	case jobs.ResultPasscodeTimeout:
		return "Unlock the device and enter its passcode when Snapback asks; it retries within the backup window."
	case jobs.ResultDeviceGone:
		return "Reconnect it with USB or bring it back on Wi-Fi; Snapback retries within the backup window."
	}
	return ""
}

func notifyTransport(t settings.Transport) notify.Transport {
	switch t {
	case settings.TransportUSB:
		return notify.USB
	case settings.TransportWiFi:
		return notify.WiFi
	}
	return notify.TransportUnknown
}
