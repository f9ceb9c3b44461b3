package app

import (
	"context"
	"log/slog"
	"time"

	"snapback/internal/failure"
	"snapback/internal/offsite"
	"snapback/internal/store"
	"snapback/notify"
	"snapback/settings"
)

// OffsiteFailedMessage is the failed alert for an off-site copy: restic's message and the
// remedy, once each.
func OffsiteFailedMessage(udid, name string, err error) notify.Message {
	if name == "" {
		name = udid
	}
	return notify.Message{Kind: notify.Failed, UDID: udid, Title: "Off-site copy of " + name + " failed",
		Body: failure.Text(err)}
}

// afterCommitOffsite is the off-site step of the backup orchestration (DESIGN.md §3.6): after
// the commit and retention, the snapshot just committed is copied to the device's restic
// repository when its offsite settings make that due. The backup has succeeded whatever
// happens here: a failed upload is logged and reported through OffsiteFailed (the failed
// alert, with restic's message and a remedy) and resumes at the next push.
//
// restic's progress goes to events; the job runner reports it as the run's transfer phase
// (bytes and percent of the upload), so the tray shows it and Cancel stays available:
// cancelling stops restic (the backup stays committed; the next push uploads again).
//
// It returns a warning for the run's outcome when the copy failed ("" otherwise).
func (b *Backups) afterCommitOffsite(ctx context.Context, st *store.Store, udid, name, snapshotID string, cfg settings.Offsite,
	log *slog.Logger, events func(offsite.Event)) string {
	if !cfg.Enabled() {
		return ""
	}
	now := b.Now
	if now == nil {
		now = time.Now
	}
	if events == nil {
		events = func(offsite.Event) {}
	}
	var secrets settings.Secrets = noKeychain{}
	if b.Secrets != nil {
		secrets = b.Secrets
	}
	res, pushed, why, err := offsite.AfterCommit(ctx, st, udid, snapshotID, cfg, secrets, now(), log, events)
	switch {
	case err != nil && ctx.Err() != nil:
		log.Info("off-site copy cancelled", "udid", udid, "snapshot", snapshotID)
	case err != nil:
		log.Warn("off-site copy failed", "udid", udid, "snapshot", snapshotID, "err", err)
		if b.OffsiteFailed != nil {
			b.OffsiteFailed(udid, name, err)
		}
		return "off-site copy failed: " + failure.Text(err)
	case pushed:
		log.Info("off-site copy done", "udid", udid, "snapshot", snapshotID, "restic", res.Snapshot.ShortID,
			"data_added", res.Summary.DataAdded, "forgotten", len(res.Forgotten))
	default:
		log.Debug("no off-site copy", "udid", udid, "why", why)
	}
	return ""
}
