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
//
// restic's progress is reported as the run's transfer phase (bytes and percent of the
// upload), so the tray shows it and Cancel stays available: cancelling stops restic (the
// backup stays committed; the next push uploads again).
func (r *Runner) afterCommitOffsite(ctx context.Context, st *store.Store, req jobs.RunRequest, snapshotID string,
	log *slog.Logger, progress func(jobs.Progress)) {
	if !req.Settings.Offsite.Enabled() {
		return
	}
	now := r.Now
	if now == nil {
		now = time.Now
	}
	events := func(ev offsite.Event) {
		if ev.Kind == offsite.EventStatus {
			progress(jobs.Progress{Phase: jobs.PhaseTransferring, Percent: ev.Status.PercentDone * 100,
				Bytes: ev.Status.BytesDone, Files: int(ev.Status.FilesDone)})
		}
	}
	res, pushed, why, err := offsite.AfterCommit(ctx, st, req.UDID, snapshotID, req.Settings.Offsite, r.Secrets, now(),
		log, events)
	switch {
	case err != nil && ctx.Err() != nil:
		log.Info("off-site copy cancelled", "udid", req.UDID, "snapshot", snapshotID)
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
