package offsite

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"snapback/internal/store"
	"snapback/settings"
)

// FromSettings returns the Restic for a device's off-site settings, with the repository
// password read from secrets (the OS keychain) each time restic needs it.
func FromSettings(o settings.Offsite, secrets settings.Secrets, log *slog.Logger) *Restic {
	return &Restic{
		Repository:     o.Repository,
		Password:       KeychainPassword(secrets, o.Repository),
		LimitUploadKiB: o.LimitUploadKiB,
		Logger:         log,
	}
}

// KeepFrom turns the settings' keep rules into restic's.
func KeepFrom(k settings.OffsiteKeep) Keep {
	return Keep{Last: k.Last, Hourly: k.Hourly, Daily: k.Daily, Weekly: k.Weekly, Monthly: k.Monthly, Yearly: k.Yearly}
}

// Due decides whether a commit is followed by an automatic push, and says why. last is the
// time of the device's newest off-site snapshot (zero: none); it is only needed for the
// daily schedule. Pure.
func Due(o settings.Offsite, last, now time.Time) (bool, string) {
	switch {
	case !o.Enabled():
		return false, "no off-site repository is configured"
	case o.Schedule == settings.OffsiteManual:
		return false, "the off-site schedule is manual (snapback offsite push)"
	case o.Schedule == settings.OffsiteAfterCommit:
		return true, "the off-site copy follows every backup"
	case o.Schedule == settings.OffsiteDaily:
		if last.IsZero() {
			return true, "the repository holds no copy of this device yet"
		}
		ly, lm, ld := last.Local().Date()
		ny, nm, nd := now.Local().Date()
		if ly == ny && lm == nm && ld == nd {
			return false, fmt.Sprintf("today's off-site copy exists (%s)", last.Local().Format("15:04"))
		}
		return true, "the newest off-site copy is from " + last.Local().Format("2006-01-02")
	}
	return false, fmt.Sprintf("unknown off-site schedule %q", o.Schedule)
}

// AfterCommit is the off-site step of a backup run: when the device's settings make a push
// due (Due), it pushes the snapshot just committed and applies the keep rules. It returns
// whether it pushed, and why not when it did not.
func AfterCommit(ctx context.Context, st *store.Store, udid, snapshotID string, o settings.Offsite,
	secrets settings.Secrets, now time.Time, log *slog.Logger, events func(Event)) (PushResult, bool, string, error) {
	if !o.Enabled() || o.Schedule == settings.OffsiteManual {
		_, why := Due(o, time.Time{}, now)
		return PushResult{}, false, why, nil
	}
	r := FromSettings(o, secrets, log)
	var last time.Time
	if o.Schedule == settings.OffsiteDaily {
		snaps, err := r.Snapshots(ctx, udid)
		if err != nil {
			return PushResult{}, false, "", err
		}
		if n := len(snaps); n > 0 {
			last = snaps[n-1].Time
		}
	}
	due, why := Due(o, last, now)
	if !due {
		return PushResult{}, false, why, nil
	}
	res, err := Push(ctx, r, st, udid, PushOptions{SnapshotID: snapshotID, Keep: KeepFrom(o.Keep), Events: events})
	return res, err == nil, why, err
}
