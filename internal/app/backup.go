package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"snapback/internal/device"
	"snapback/internal/engine"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
	"snapback/internal/offsite"
	"snapback/internal/store"
	"snapback/jobs"
	"snapback/settings"
)

// Backups is the one backup orchestration: device → store Begin → (encryption) → engine →
// Commit → retention. The daemon's job runner, the tray, `snapback backup` and the demo all
// run backups through it, so a device's settings (location, encryption, snapshots,
// retention) apply the same whoever starts the run.
type Backups struct {
	// Settings returns the current settings (the settings file, live-reloaded or read once).
	Settings func() *settings.Settings
	// Stores opens the snapshot stores (one per location).
	Stores *Stores
	// Secrets holds backup passwords (the OS keychain); needed when a device's settings say
	// encryption on or off. nil: the encryption setting cannot be applied (an error when it
	// asks for a change).
	Secrets settings.Secrets
	// OffsiteFailed, when set, hears of a failed off-site copy after a successful backup
	// (device UDID and name, and the classified failure).
	OffsiteFailed func(udid, name string, err error)
	// WiFiProbeEvery is engine.Request.WiFiProbeEvery (0 = the engine's default); tests
	// scale it down.
	WiFiProbeEvery time.Duration
	// PasscodeCancelWindow is engine.Request.PasscodeCancelWindow (0 = the engine's default:
	// a passcode sheet gone sooner than that before a 208 was cancelled by the user); tests
	// scale it down to see a real passcode timeout in less than 3 minutes.
	PasscodeCancelWindow time.Duration
	// Devices finds the device, with built-in Wi-Fi discovery (nil = usbmuxd alone).
	Devices *device.Host
	// Scrub bounds the re-reading of stored files that follows a commit, so that bit rot is
	// found while the device can still re-send the file; nil takes the settings' scrub key
	// (DefaultScrub() when the file does not set it). Tests set it to read everything.
	Scrub *store.ScrubBudget
	// Engine runs the protocol part of one backup into a folder; nil is engine.Backup.
	Engine func(context.Context, engine.Request) (engine.Result, error)
	Now    func() time.Time
	Logger *slog.Logger
}

// BackupRequest is one backup to run.
type BackupRequest struct {
	// UDID of the device, in any letter case; "" picks the only connected device.
	UDID string
	// Location overrides the settings' location for this run (`--location`).
	Location string
	// Full forces a full backup.
	Full bool
	// Events receives the engine's events (phase, bytes, passcode prompt); may be nil. It is
	// called serially and must return quickly.
	Events func(mobilebackup2.Event)
	// Settings, when set, are the device's effective settings for this run (the job manager
	// fixes them when it queues the run); nil reads them from Backups.Settings.
	Settings *settings.DeviceSettings
	// Name is the device's name for messages ("" = its UDID).
	Name string
	// Offsite receives the off-site upload's events (restic's progress); may be nil.
	Offsite func(offsite.Event)
	// PairPrompt, when set, turns on automatic pairing: a device that does not trust this
	// computer is paired first and PairPrompt tells the user to tap Trust (engine.Request).
	PairPrompt func(p device.PairPrompt, name string)
}

// Outcome is what a committed backup run reports: everything a view shows about it, so
// nobody re-derives it from the store afterwards.
type Outcome struct {
	UDID      string
	Device    device.Info
	Transport settings.Transport
	Location  string // the store location
	Dir       string // <location>/<UDID>: the committed latest backup (holds Status.plist)
	Snapshot  string // ID of the committed snapshot record
	Full      bool
	Bytes     int64 // bytes the device sent in this run
	Files     int64 // files the device sent in this run
	Size      int64 // size of the committed backup (each inode once)
	Committed time.Time
	Started   time.Time
	Finished  time.Time
	Encrypted bool
	// Unreadable lists the files the device could not read in this run; the snapshot
	// records them as exceptions. UnreadableTotal counts the snapshot's exceptions (this
	// run's and those still missing from earlier runs).
	Unreadable      []mobilebackup2.UnreadableFile
	UnreadableTotal int
	Approval        *jobs.Approval // retention wants to delete snapshots and must ask first
	Warnings        []string       // things that went wrong after the commit (retention)
	// Upkeep is the store's work after a commit that nobody waits for: the day's scrub
	// (re-reading a slice of the stored files, to find bit rot while the device can still
	// re-send them) and preparing the folder the next backup starts from
	// (store.PrepareNext), both at idle priority. The caller runs it after reporting the
	// outcome, so the result is not held back by either (issue #16: on a 1,000,000-file
	// store the scrub alone held the result back by up to a minute). It logs what failed
	// (the scrub is tried after the next backup, the next backup clones as before) and
	// reports what the user must hear of. nil unless the run committed. The scrub runs
	// under hurry, which ends with ctx or earlier when another backup of the device waits
	// (it goes on from where it stopped after that backup); the preparation, which that
	// backup needs, runs under ctx.
	Upkeep func(ctx, hurry context.Context) Upkeep
}

// Upkeep is what the work after a commit (Outcome.Upkeep) found.
type Upkeep struct {
	Damaged int // stored files the scrub found damaged (snapback snapshots verify --data names them)
}

// DamagedText is what the user reads when the scrub found damaged files.
func DamagedText(files int) string {
	if files == 1 {
		return "1 stored file is damaged; snapback snapshots verify --data names it"
	}
	return fmt.Sprintf("%d stored files are damaged; snapback snapshots verify --data names them", files)
}

// Duration is how long the run took.
func (o Outcome) Duration() time.Duration { return o.Finished.Sub(o.Started) }

// FindDevice resolves udid (any letter case; "" = the only connected device) to a connected
// device, before anything is written: a wrong UDID fails at once with "no such device" and
// creates no folder.
// devs adds built-in Wi-Fi discovery (nil = usbmuxd alone).
func FindDevice(ctx context.Context, devs *device.Host, udid string) (device.Entry, error) {
	e, err := devs.Find(ctx, udid)
	switch {
	case err == nil:
		return e, nil
	case errors.Is(err, device.ErrNotFound) && udid != "":
		return device.Entry{}, failure.Newf(failure.NotConnected, "no such device %s", udid)
	case errors.Is(err, device.ErrNotFound):
		return device.Entry{}, failure.Newf(failure.NotConnected, "no device connected")
	case errors.Is(err, device.ErrNoUsbmuxd):
		return device.Entry{}, failure.New(failure.NotConnected, err)
	case udid == "":
		// Several devices: the caller must choose.
		return device.Entry{}, &failure.Error{Class: failure.Usage, Detail: err.Error(), Fix: "see snapback devices"}
	}
	return device.Entry{}, failure.New(failure.NotConnected, err)
}

// Run runs one backup through the store and returns what was committed. Errors are
// classified (*failure.Error) once, here or below.
func (b *Backups) Run(ctx context.Context, req BackupRequest) (Outcome, error) {
	log := b.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := b.Now
	if now == nil {
		now = time.Now
	}
	entry, err := FindDevice(ctx, b.Devices, device.CanonicalUDID(req.UDID))
	if err != nil {
		return Outcome{}, err
	}
	udid := entry.UDID // the device's own spelling: folders and records use it
	eff := b.settings().Effective(udid)
	if req.Settings != nil {
		eff = *req.Settings
	}
	out := Outcome{UDID: udid, Transport: settingsTransport(entry.Transport)}
	loc := req.Location
	if loc == "" {
		loc = eff.Location
	}
	st, err := b.Stores.ForDevice(ctx, b.settings(), udid, loc)
	if err != nil {
		return out, err
	}
	out.Location = st.Location()
	// engine.Backup waits for the staging clone's top-level files before it touches the
	// folder (Request.RootReady, at the device's first folder message) and for each prefix
	// folder before it touches that (Request.EntryReady), so the clone runs while the device
	// connects, prepares its snapshot and uploads; an Engine of a test might not wait.
	run, err := st.Begin(ctx, udid, store.BeginOptions{Full: req.Full, CloneInBackground: b.Engine == nil})
	if err != nil {
		return out, storeFailure(err)
	}
	committed := false
	defer func() {
		if !committed {
			if aerr := run.Abort(); aerr != nil {
				log.Warn("discarding staging failed", "udid", udid, "err", aerr)
			}
		}
	}()
	events := req.Events
	if events == nil {
		events = func(mobilebackup2.Event) {}
	}
	// The settings' encryption (on/off) is applied before the backup, with the password from
	// the keychain (the device asks for its passcode for that too).
	if want := eff.Encryption; want == settings.EncryptionOn || want == settings.EncryptionOff {
		secrets := b.Secrets
		if secrets == nil {
			secrets = noKeychain{}
		}
		if err := EnsureEncryption(ctx, b.Devices, udid, want, secrets, events); err != nil {
			return out, err
		}
	}
	eng := b.Engine
	if eng == nil {
		eng = engine.Backup
	}
	// Content hashes are taken while the bytes stream in, so the commit need not read the new
	// files again (store.Run.ContentHash; issue #11: 0.8% CPU instead of 16.5%).
	hashNew, hashed := run.ContentHash()
	res, err := eng(ctx, engine.Request{Devices: b.Devices, UDID: udid, Root: run.Root(), Full: req.Full, Now: now, Log: log, Events: events,
		PairPrompt: req.PairPrompt, WiFiProbeEvery: b.WiFiProbeEvery, PasscodeCancelWindow: b.PasscodeCancelWindow,
		ContentHash: hashNew, ContentHashed: func(l mobilebackup2.Landed) { hashed(l.Name, l.Info, l.Sum) },
		RootReady: run.RootReady, EntryReady: run.EntryReady,
		// run.Root() is the store's staging folder: it is committed only after the whole run
		// succeeded and was verified, and discarded otherwise, so new files may be written
		// under their final names; they are created read-only, as committed files must be.
		Staging: true, FileMode: 0o444})
	out.Device, out.Started, out.Finished = res.Device, res.Started, res.Finished
	out.Bytes, out.Files, out.Full = res.Backup.BytesReceived, res.Backup.FilesReceived, res.Backup.FullBackup
	if err != nil {
		return out, err
	}
	kind := store.KindIncremental
	if res.Backup.FullBackup {
		kind = store.KindFull
	}
	snap, err := run.Commit(ctx, store.CommitMeta{Kind: kind, Exceptions: Exceptions(res)})
	if err != nil {
		return out, storeFailure(err)
	}
	committed = true
	out.Finished = now()
	out.Snapshot, out.Committed, out.Size, out.Encrypted = snap.ID, snap.Time, snap.TotalSize, snap.Encrypted
	out.Unreadable, out.UnreadableTotal = res.Backup.Unreadable, len(snap.Exceptions)
	out.Dir = st.LatestDir(udid)
	b.Stores.committed(st, udid, snap)

	if s := eff.Snapshots; s.Enabled && s.AutoDelete {
		approval, err := ApplyRetention(ctx, st, udid, s)
		if err != nil {
			// The backup itself succeeded; retention tries again after the next one.
			log.Warn("retention failed", "udid", udid, "err", err)
			out.Warnings = append(out.Warnings, "retention did not run: "+err.Error())
		}
		out.Approval = approval
	}
	if w := b.afterCommitOffsite(ctx, st, udid, req.Name, snap.ID, eff.Offsite, log, req.Offsite); w != "" {
		out.Warnings = append(out.Warnings, w)
	}
	deferScrub := onlyThisRun(st, udid, snap, run)
	out.Upkeep = func(ctx, hurry context.Context) Upkeep {
		var u Upkeep
		if !deferScrub {
			u.Damaged = b.scrub(hurry, st, udid, log)
		}
		// After the scrub: a latest backup it found damaged is not worth preparing from
		// (PrepareNext refuses it, and the next backup is a full one).
		b.prepareNext(ctx, st, udid, now, log)
		return u
	}
	if deferScrub {
		// The store holds nothing but what this run just wrote and hashed (from the bytes as
		// they streamed in, or read back by the commit moments ago). A scrub now would read
		// those files back from the page cache, not from the disk, so it could not find a bad
		// sector or a flaky USB bridge: it would prove nothing, yet cost up to its whole
		// budget (1 GB) of reading and hashing right after the longest backup the device
		// has (issue #16). The daily scrub starts after the next backup, when its reads
		// reach the disk; scrub.json is untouched, so its schedule is otherwise unchanged.
		log.Debug("first backup: scrub deferred to the next backup", "udid", udid)
	}
	return out, nil
}

// prepareNext clones the new latest backup into the folder the next backup starts from
// (store.PrepareNext), at idle I/O and CPU priority, while the disk is known to be there and
// nothing waits for it: the next backup then begins at once instead of linking every file
// while the device sends. A failure costs nothing but that (the next Begin clones as before),
// so it is logged, not reported.
func (b *Backups) prepareNext(ctx context.Context, st *store.Store, udid string, now func() time.Time, log *slog.Logger) {
	start := now()
	var made bool
	var err error
	store.RunIdle(func() { made, err = st.PrepareNext(ctx, udid) })
	switch {
	case errors.Is(err, context.Canceled):
		log.Info("stopped preparing the next backup's folder", "udid", udid)
	case err != nil:
		log.Warn("could not prepare the next backup's folder; the next backup clones the latest itself", "udid", udid, "err", err)
	case made:
		log.Info("prepared the next backup's folder", "udid", udid, "took", now().Sub(start).Round(time.Millisecond))
	}
}

// onlyThisRun says whether snap, just committed by run, is all the store holds of udid: a
// first backup that adopted nothing.
func onlyThisRun(st *store.Store, udid string, snap store.Snapshot, run *store.Run) bool {
	if snap.Kind != store.KindFull || len(run.Notes()) > 0 {
		return false
	}
	list, err := st.List(udid)
	return err == nil && len(list) == 1 && list[0].ID == snap.ID
}

// DefaultScrub re-reads at most 1 GB or 5% of a store a day, whichever is less, so a whole
// store is read every few weeks without a daily backup taking noticeably longer.
func DefaultScrub() store.ScrubBudget {
	b, _ := ScrubBudget(settings.DefaultScrub())
	return b
}

// ScrubBudget turns the settings' scrub key into the store's daily budget; false when the
// settings turn the scrub off.
func ScrubBudget(s settings.Scrub) (store.ScrubBudget, bool) {
	if s.Off() {
		return store.ScrubBudget{}, false
	}
	return store.ScrubBudget{MaxBytes: s.MaxBytesPerDay, MaxPercent: float64(s.MaxPercentPerDay), Every: 24 * time.Hour}, true
}

// scrub runs the day's slice of content verification after a commit (the one moment an
// external backup disk is known to be there), at idle I/O and CPU priority. It returns
// how many damaged files it found; a scrub that fails is logged and tried after the next
// backup.
func (b *Backups) scrub(ctx context.Context, st *store.Store, udid string, log *slog.Logger) int {
	budget, on := ScrubBudget(b.settings().Scrub)
	if b.Scrub != nil {
		budget, on = *b.Scrub, true
	}
	if !on {
		return 0
	}
	var rep store.DataReport
	var err error
	store.RunIdle(func() { rep, err = st.Scrub(ctx, udid, budget) })
	if len(rep.Damaged) > 0 {
		log.Warn("scrub found damaged files", "udid", udid, "files", len(rep.Damaged), "first", rep.Damaged[0].Path)
		return len(rep.Damaged)
	}
	if err != nil {
		log.Warn("scrub did not run", "udid", udid, "err", err)
	}
	return 0
}

func (b *Backups) settings() *settings.Settings {
	if b.Settings != nil {
		if s := b.Settings(); s != nil {
			return s
		}
	}
	return defaultSettings()
}

// defaultSettings are the built-in defaults (no settings file).
func defaultSettings() *settings.Settings {
	s, err := settings.Parse(nil)
	if err != nil {
		// Only a bad SNAPBACK_* environment variable gets here; settings.Open reports it.
		s, _ = settings.Parse([]byte("{}"))
	}
	if s == nil {
		s = &settings.Settings{}
	}
	return s
}

func settingsTransport(t device.Transport) settings.Transport {
	if t == device.WiFi {
		return settings.TransportWiFi
	}
	return settings.TransportUSB
}

// storeFailure classifies an error of the snapshot store once, at the boundary where the
// store meets the rest of the app: a missing disk, a lock held by another run, too little
// space and the OS errors (ENOSPC, EROFS, EACCES) each get their class, so a full disk is
// never reported as a lost cable. An already classified error passes through.
func storeFailure(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := failure.As(err); ok {
		return err
	}
	var disk *store.DiskError
	var locked *store.LockedError
	var space *store.SpaceError
	switch {
	case errors.As(err, &disk):
		return &failure.Error{Class: failure.DiskMissing, Detail: disk.Location + ": " + disk.Cause, Fix: disk.Fix, Cause: nil}
	case errors.Is(err, store.ErrDiskNotConnected):
		return failure.New(failure.DiskMissing, err)
	case errors.As(err, &locked):
		return &failure.Error{Class: failure.DeviceBusy,
			Detail: fmt.Sprintf("another Snapback run (process %d on %s, since %s) is backing up %s", locked.PID, locked.Host, locked.Since.Local().Format("15:04:05"), locked.UDID),
			Fix:    "wait for that backup to finish, then try again"}
	case errors.Is(err, store.ErrLocked):
		return failure.New(failure.DeviceBusy, err)
	case errors.As(err, &space):
		return &failure.Error{Class: failure.NoSpace, Detail: fmt.Sprintf("%s has %d MB free, the backup needs %d MB", space.Location, space.Free>>20, space.Need>>20)}
	case errors.Is(err, store.ErrInsufficientSpace):
		return failure.New(failure.NoSpace, err)
	case errors.Is(err, store.ErrInvalidBackup):
		return failure.New(failure.Damaged, err)
	case errors.Is(err, store.ErrNotFound):
		return failure.New(failure.NoBackup, err)
	}
	return failure.FromOS(err)
}

// noKeychain stands in when no keychain was given: a device already in the wanted
// encryption state needs none; a change fails with the keychain's remedy.
type noKeychain struct{}

func (noKeychain) Get(context.Context, string) (string, error) {
	return "", failure.Newf(failure.Keychain, "no keychain to read the backup password from")
}
func (noKeychain) Set(context.Context, string, string) error {
	return failure.Newf(failure.Keychain, "no keychain to store the backup password in")
}
func (noKeychain) Delete(context.Context, string) error { return nil }
