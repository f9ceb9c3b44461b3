package app

import (
	"context"
	"log/slog"
	"time"

	"snapback/internal/failure"
	"snapback/internal/offsite"
	"snapback/internal/store"
	"snapback/jobs"
	"snapback/notify"
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
func (r *Runner) afterCommitOffsite(ctx context.Context, st *store.Store, req jobs.RunRequest, snapshotID string, log *slog.Logger) {
	if !req.Settings.Offsite.Enabled() {
		return
	}
	now := r.Now
	if now == nil {
		now = time.Now
	}
	res, pushed, why, err := offsite.AfterCommit(ctx, st, req.UDID, snapshotID, req.Settings.Offsite, r.Secrets, now(),
		log, nil)
	switch {
	case err != nil:
		log.Warn("off-site copy failed", "udid", req.UDID, "snapshot", snapshotID, "err", err)
		if r.OffsiteFailed != nil {
			r.OffsiteFailed(req.UDID, req.Name, err)
		}
	case pushed:
		log.Info("off-site copy done", "udid", req.UDID, "snapshot", snapshotID, "restic", res.Snapshot.ShortID,
			"data_added", res.Summary.DataAdded, "forgotten", len(res.Forgotten))
	default:
		log.Debug("no off-site copy", "udid", req.UDID, "why", why)
	}
}
