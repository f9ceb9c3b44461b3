package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/device"
	"snapback/internal/mobilebackup2"
	"snapback/internal/offsite"
	"snapback/internal/store"
	"snapback/jobs"
	"snapback/settings"
)

// Runner performs one backup for the job manager through the one orchestration
// (Backups.Run) and reports the run's figures. It implements jobs.Runner.
type Runner struct {
	Backups *Backups
}

// Stores opens and caches one *store.Store per location, finds a device's store from the
// settings (the one settings-aware way every command uses), and remembers each device's
// last commit so that the schedule never re-reads the stores' records.
type Stores struct {
	Now    func() time.Time
	Logger *slog.Logger
	// NoCreate: never create the OS default location (commands that only read).
	NoCreate bool

	mu   sync.Mutex
	open map[string]*store.Store
	last map[string]lastCommit // UDID → its latest commit, as read or committed
}

// Location is where udid's backups live: override (`--location`) when given, else the
// device's location in the settings, else the OS default.
func Location(cfg *settings.Settings, udid, override string) (string, error) {
	if override != "" {
		return filepath.Abs(override)
	}
	loc := ""
	if cfg != nil {
		loc = cfg.Effective(udid).Location
	}
	if loc == "" {
		return store.DefaultLocation()
	}
	return loc, nil
}

// ForDevice opens the store that holds udid's backups (see Location).
func (s *Stores) ForDevice(ctx context.Context, cfg *settings.Settings, udid, override string) (*store.Store, error) {
	loc, err := Location(cfg, udid, override)
	if err != nil {
		return nil, storeFailure(err)
	}
	return s.Open(ctx, loc)
}

// Open returns the store at location ("" = the OS default). Errors are classified
// (*failure.Error: a missing disk is failure.DiskMissing).
func (s *Stores) Open(ctx context.Context, location string) (*store.Store, error) {
	def, err := store.DefaultLocation()
	if err != nil {
		return nil, storeFailure(err)
	}
	if location == "" {
		location = def
	}
	// The OS data folder may be created; a user-chosen folder must exist (its disk may be
	// missing, and an empty mount point must never be filled).
	create := !s.NoCreate && filepath.Clean(location) == filepath.Clean(def)
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.open[location]; ok {
		return st, nil
	}
	st, err := store.Open(ctx, location, store.Options{Now: s.Now, Logger: s.Logger, CreateLocation: create})
	if err != nil {
		return nil, storeFailure(err)
	}
	if s.open == nil {
		s.open = map[string]*store.Store{}
	}
	s.open[location] = st
	return st, nil
}

// LastBackup returns when udid's latest backup was committed. The store's records are read
// once; after that one stat of the latest backup's Status.plist tells whether anything
// replaced it (a `snapback backup` from another process, idevicebackup2 or Finder writing
// into it), and only then are the records read again. So a manual backup made outside this
// process still counts as the day's backup, without re-reading every record every minute.
func (s *Stores) LastBackup(ctx context.Context, cfg *settings.Settings, udid string) time.Time {
	st, err := s.ForDevice(ctx, cfg, udid, "")
	s.mu.Lock()
	cached, ok := s.last[udid]
	s.mu.Unlock()
	if err != nil {
		return cached.t // disk missing: what we knew, and ask again next time
	}
	status := statusOf(st, udid)
	if ok && status != nil && cached.status != nil && os.SameFile(status, cached.status) &&
		status.ModTime().Equal(cached.status.ModTime()) && status.Size() == cached.status.Size() {
		return cached.t
	}
	var t time.Time
	if b := ReadBackups(st, udid); b.Latest != nil {
		t = b.Latest.Time
	}
	return s.remember(udid, lastCommit{t: t, status: status})
}

// lastCommit is what LastBackup knows of a device's latest commit.
type lastCommit struct {
	t      time.Time
	status os.FileInfo // the latest backup's Status.plist when t was read; nil: none
}

// committed records a commit for LastBackup.
func (s *Stores) committed(st *store.Store, udid string, snap store.Snapshot) {
	s.remember(udid, lastCommit{t: snap.Time, status: statusOf(st, udid)})
}

// remember records c as udid's latest commit, unless a later one is recorded already (a
// commit while LastBackup read the records); it returns the time kept.
func (s *Stores) remember(udid string, c lastCommit) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[string]lastCommit{}
	}
	if cur, ok := s.last[udid]; ok && cur.t.After(c.t) {
		c.t = cur.t
	}
	s.last[udid] = c
	return c.t
}

// statusOf is the Status.plist of udid's latest backup, nil when there is none.
func statusOf(st *store.Store, udid string) os.FileInfo {
	fi, err := os.Stat(filepath.Join(st.LatestDir(udid), backupfmt.StatusPlistName))
	if err != nil {
		return nil
	}
	return fi
}

// Run implements jobs.Runner.
func (r *Runner) Run(ctx context.Context, req jobs.RunRequest, progress func(jobs.Progress)) (jobs.RunResult, error) {
	progress(jobs.Progress{Phase: jobs.PhasePreparing, Percent: -1})
	var last jobs.Progress
	eff := req.Settings
	out, err := r.Backups.Run(ctx, BackupRequest{
		UDID:     req.UDID,
		Name:     req.Name,
		Settings: &eff,
		// A device that does not trust this computer is paired right away; the user sees
		// "Tap Trust on …" (jobs.EventTrustRequested → notify.Trust).
		PairPrompt: func(device.PairPrompt, string) {
			progress(jobs.Progress{Phase: jobs.PhaseWaitingTrust, Percent: -1})
		},
		Offsite: func(ev offsite.Event) {
			if ev.Kind == offsite.EventStatus {
				progress(jobs.Progress{Phase: jobs.PhaseTransferring, Percent: ev.Status.PercentDone * 100,
					Bytes: ev.Status.BytesDone, Files: int(ev.Status.FilesDone)})
			}
		},
		Events: func(ev mobilebackup2.Event) {
			p := toJobsProgress(ev)
			if ev.Kind == mobilebackup2.EventFinished {
				p = jobs.Progress{Phase: jobs.PhaseCommitting, Percent: 100, Bytes: ev.BytesDone, Files: int(ev.FilesDone)}
			}
			if p != last {
				last = p
				progress(p)
			}
		},
	})
	if err != nil {
		return jobs.RunResult{}, err
	}
	return jobs.RunResult{
		Snapshot: out.Snapshot, Dir: out.Dir, Transport: out.Transport,
		Bytes: out.Bytes, Files: int(out.Files), Size: out.Size,
		Duration: out.Duration(), Committed: out.Committed,
		Warnings: out.Warnings, Approval: out.Approval,
		Unreadable: out.UnreadableTotal,     // this run's and those still missing from earlier runs
		After:      upkeepAfter(out.Upkeep), // once the result is announced
	}, nil
}

// upkeepAfter is a run's upkeep as the manager's After (nil when there is none).
func upkeepAfter(upkeep func(ctx, hurry context.Context) Upkeep) func(ctx, hurry context.Context) jobs.AfterReport {
	if upkeep == nil {
		return nil
	}
	return func(ctx, hurry context.Context) jobs.AfterReport {
		return jobs.AfterReport{Damaged: upkeep(ctx, hurry).Damaged}
	}
}

// Policy turns the snapshot settings into the store's retention policy. Snapshots or
// automatic deletion turned off give the empty policy, which deletes nothing.
func Policy(s settings.Snapshots) store.Policy {
	if !s.Enabled || !s.AutoDelete {
		return store.Policy{}
	}
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
