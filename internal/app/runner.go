package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"snapback/internal/device"
	"snapback/internal/engine"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
	"snapback/internal/store"
	"snapback/jobs"
	"snapback/settings"
)

// Runner performs one backup for the job manager: it opens the device's store, begins a run
// (lock, volume guard, free space, staging clone), lets the engine write into staging,
// commits, and applies retention. It implements jobs.Runner.
type Runner struct {
	Now    func() time.Time
	Logger *slog.Logger
	// Secrets holds backup passwords (the OS keychain); needed when a device's settings
	// say encryption on or off.
	Secrets settings.Secrets
	// Stores opens stores by location; nil uses a process-wide cache over store.Open.
	Stores *Stores
	// Devices finds the device, with built-in Wi-Fi discovery (nil = usbmuxd alone).
	Devices *device.Host
	// WiFiProbeEvery is engine.Request.WiFiProbeEvery (0 = the engine's default); tests
	// scale it down.
	WiFiProbeEvery time.Duration
	// OffsiteFailed, when set, hears of a failed off-site copy after a successful backup
	// (device UDID and name, and the classified failure).
	OffsiteFailed func(udid, name string, err error)
	// engine is replaceable by tests of the error mapping only.
	backup func(context.Context, engine.Request) (engine.Result, error)
}

// Stores opens and caches one *store.Store per location.
type Stores struct {
	Now    func() time.Time
	Logger *slog.Logger
	mu     sync.Mutex
	open   map[string]*store.Store
}

// Open returns the store for a device's configured location ("" = the OS default).
func (s *Stores) Open(ctx context.Context, location string) (*store.Store, error) {
	def, err := store.DefaultLocation()
	if err != nil {
		return nil, err
	}
	if location == "" {
		location = def
	}
	// The OS data folder may be created; a user-chosen folder must exist (its disk may be
	// missing, and an empty mount point must never be filled).
	create := filepath.Clean(location) == filepath.Clean(def)
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.open[location]; ok {
		return st, nil
	}
	st, err := store.Open(ctx, location, store.Options{Now: s.Now, Logger: s.Logger, CreateLocation: create})
	if err != nil {
		return nil, err
	}
	if s.open == nil {
		s.open = map[string]*store.Store{}
	}
	s.open[location] = st
	return st, nil
}

// Run implements jobs.Runner.
func (r *Runner) Run(ctx context.Context, req jobs.RunRequest, progress func(jobs.Progress)) (jobs.RunResult, error) {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress(jobs.Progress{Phase: jobs.PhasePreparing, Percent: -1})
	st, err := r.Stores.Open(ctx, req.Settings.Location)
	if err != nil {
		return jobs.RunResult{}, classifyStore(err)
	}
	run, err := st.Begin(ctx, req.UDID, store.BeginOptions{})
	if err != nil {
		return jobs.RunResult{}, classifyStore(err)
	}
	committed := false
	defer func() {
		if !committed {
			if aerr := run.Abort(); aerr != nil {
				log.Warn("discarding staging failed", "udid", req.UDID, "err", aerr)
			}
		}
	}()

	backup := r.backup
	if backup == nil {
		backup = engine.Backup
	}
	var last jobs.Progress
	events := func(ev mobilebackup2.Event) {
		p := toJobsProgress(ev)
		if p != last {
			last = p
			progress(p)
		}
	}
	// encryption: on/off in the settings is applied before the backup, with the password
	// from the keychain (the device asks for its passcode for that too).
	if req.Settings.Encryption != settings.EncryptionKeep && r.Secrets != nil {
		if err := EnsureEncryption(ctx, r.Devices, req.UDID, req.Settings.Encryption, r.Secrets, events); err != nil {
			return jobs.RunResult{}, classifyEngine(err)
		}
	}
	res, err := backup(ctx, engine.Request{
		Devices: r.Devices,
		UDID:    req.UDID,
		Root:    run.Root(),
		Now:     r.Now,
		Log:     log,
		Events:  events,
		// A device that does not trust this computer is paired right away; the user sees
		// "Tap Trust on …" (jobs.EventTrustRequested → notify.Trust).
		PairPrompt: func(device.PairPrompt, string) {
			progress(jobs.Progress{Phase: jobs.PhaseWaitingTrust, Percent: -1})
		},
		WiFiProbeEvery: r.WiFiProbeEvery,
	})
	if err != nil {
		return jobs.RunResult{}, classifyEngine(err)
	}

	progress(jobs.Progress{Phase: jobs.PhaseCommitting, Percent: 100, Bytes: last.Bytes, Files: last.Files})
	kind := store.KindIncremental
	if res.Backup.FullBackup {
		kind = store.KindFull
	}
	snap, err := run.Commit(ctx, store.CommitMeta{Kind: kind, Exceptions: Exceptions(res)})
	if err != nil {
		return jobs.RunResult{}, classifyStore(err)
	}
	committed = true
	out := jobs.RunResult{Snapshot: snap.ID, Bytes: res.Backup.BytesReceived, Files: int(res.Backup.FilesReceived),
		Unreadable: len(snap.Exceptions)} // this run's and those still missing from earlier runs

	if s := req.Settings.Snapshots; s.Enabled && s.AutoDelete {
		approval, err := ApplyRetention(ctx, st, req.UDID, s)
		if err != nil {
			// The backup itself succeeded; retention tries again after the next one.
			log.Warn("retention failed", "udid", req.UDID, "err", err)
		}
		out.Approval = approval
	}
	r.afterCommitOffsite(ctx, st, req, snap.ID, log, progress)
	return out, nil
}

// Policy turns the snapshot settings into the store's retention policy.
func Policy(s settings.Snapshots) store.Policy {
	return store.Policy{
		MaxExtraPercent: s.MaxExtraPercent,
		MinAge:          s.MinAge,
		AskBeforeDelete: s.AskBeforeDelete,
		KeepDaily:       s.KeepDaily,
		KeepWeekly:      s.KeepWeekly,
		KeepMonthly:     s.KeepMonthly,
	}
}

// ApplyRetention prunes what the policy allows and returns an approval request for what it
// wants to delete but must ask about first.
func ApplyRetention(ctx context.Context, st *store.Store, udid string, s settings.Snapshots) (*jobs.Approval, error) {
	d, _, err := st.Prune(ctx, udid, Policy(s), store.PruneOptions{})
	if err != nil || !d.NeedsApproval() {
		return nil, err
	}
	var bytes int64
	for _, v := range d.Pending {
		if sn, err := st.Get(udid, v.ID); err == nil {
			bytes += sn.UniqueSize
		}
	}
	return &jobs.Approval{
		ID:        fmt.Sprintf("prune-%s-%d", udid, len(d.Pending)),
		Summary:   fmt.Sprintf("delete %d old snapshots", len(d.Pending)),
		Bytes:     bytes,
		Snapshots: len(d.Pending),
	}, nil
}

func toJobsProgress(ev mobilebackup2.Event) jobs.Progress {
	p := jobs.Progress{Percent: ev.Percent, Bytes: ev.BytesDone, Files: int(ev.FilesDone)}
	switch {
	case ev.Phase == mobilebackup2.PhaseWaitingForPasscode:
		p.Phase = jobs.PhaseWaitingPasscode
	case ev.Phase >= mobilebackup2.PhaseTransferring:
		p.Phase = jobs.PhaseTransferring
	default:
		p.Phase = jobs.PhasePreparing
	}
	return p
}

// classifyEngine keeps the engine's classified error (its message names cause and remedy)
// and marks the classes the schedule treats specially.
func classifyEngine(err error) error {
	switch {
	case errors.Is(err, failure.DeviceLocked):
		return fmt.Errorf("%w: %w", jobs.ErrPasscodeTimeout, err)
	case errors.Is(err, failure.LinkLost), errors.Is(err, failure.NotConnected):
		return fmt.Errorf("%w: %w", jobs.ErrDeviceGone, err)
	}
	return err
}

// classifyStore marks a missing backup disk for the schedule and notifications.
func classifyStore(err error) error {
	if errors.Is(err, store.ErrDiskNotConnected) {
		return fmt.Errorf("%w: %w", jobs.ErrDiskMissing, err)
	}
	return err
}
