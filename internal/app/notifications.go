package app

import (
	"context"
	"log/slog"

	"snapback/jobs"
	"snapback/notify"
	"snapback/settings"
)

// eventMask is what the notification forwarder listens to.
const eventMask = jobs.EventTrustRequested | jobs.EventPasscodeRequested |
	jobs.EventRunFinished | jobs.EventRunFailed | jobs.EventOverdue | jobs.EventApprovalNeeded |
	jobs.EventDamageFound | jobs.EventSettingsInvalid | jobs.EventSettingsReloaded

// Notifications turns engine events into desktop notifications, as the settings allow.
// Rate limiting and de-duplication are notify.Gate's job; this only decides what to say.
type Notifications struct {
	Bus      *jobs.Bus
	Notifier notify.Notifier
	Settings func() *settings.Settings
	// SettingsPath names the settings file in the "settings broken" message.
	SettingsPath string
	// Location returns where a device's backups go, for the "disk not connected" message.
	Location func(udid string) string
	Logger   *slog.Logger
	// AllKinds ignores the desktop switches of `notifications:`; push channels filter by
	// their own `events:` list instead.
	AllKinds bool
}

// Run forwards events until ctx ends. It owns its subscription.
func (n *Notifications) Run(ctx context.Context) {
	n.Bus.Follow(ctx, eventMask, func(ev jobs.Event) {
		if msg, ok := n.message(ev); ok {
			if err := n.Notifier.Notify(msg); err != nil && n.Logger != nil {
				n.Logger.Warn("notification not shown", "kind", msg.Kind, "err", err)
			}
		}
	})
}

// message decides whether and what to notify for one event. Pure apart from the settings
// and location lookups it is given: a finished run's event carries its figures.
func (n *Notifications) message(ev jobs.Event) (notify.Message, bool) {
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
		var r jobs.RunResult
		if ev.Run != nil {
			r = *ev.Run
		}
		msg := notify.Done(dev, notify.Run{Sent: r.Bytes, Size: r.Size, Took: r.Duration, Via: notifyTransport(r.Transport)})
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
		// The error was classified once, by the runner: its message and its remedy are shown
		// as they come, each once.
		return notify.Failure(dev, ev.Err, ev.Remedy), on.Failed
	case jobs.EventDamageFound:
		// Damage is news the user must act on, whatever the settings say of routine news.
		return notify.Damage(dev, ev.Damaged), true
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

func notifyTransport(t settings.Transport) notify.Transport {
	return viewTransport(t, notify.USB, notify.WiFi, notify.TransportUnknown)
}
