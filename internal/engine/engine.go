// Package engine runs one backup of one device into one folder: it joins internal/device
// (lockdown, services, notifications, sync lock) and internal/mobilebackup2 (the protocol)
// in the order of protocol.md §11, writes Info.plist, and classifies the outcome once.
//
// It knows nothing of snapshots: the caller chooses Root (a plain folder for
// `snapback backup --dir`, a staging folder prepared by the store otherwise) and the backup
// lands in Root/<UDID>/.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"snapback/internal/atomicfile"
	"snapback/internal/backupfmt"
	"snapback/internal/device"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
)

// Request describes one backup run.
type Request struct {
	// ContentHash and ContentHashed, if set, hash every uploaded file as it streams in (see
	// mobilebackup2.Client.HashUploads; store.Run.ContentHash provides both): ContentHash is
	// called once per backup and its hash Reset between files. ContentHashed hears of every
	// file that landed (a copy without a sum); its FileInfo and sum are valid only during
	// the call.
	ContentHash   func() hash.Hash
	ContentHashed func(mobilebackup2.Landed)
	// RootReady, if set, is called (and must return nil) before the first read or write
	// under Root/<UDID>: the store clones the latest backup into its staging Root while the
	// device connects, lists its apps, grants the sync lock and, after the Backup request,
	// prepares its snapshot (store.BeginOptions.CloneInBackground); RootReady waits for the
	// folder's top-level files, EntryReady for each prefix folder. It is called at the
	// device's first message that touches the folder (mobilebackup2.BackupOptions.Ready),
	// at most once, and not at all if the run ends before that.
	RootReady func(context.Context) error
	// EntryReady, if set, is called before anything under one top-level entry of
	// Root/<UDID> is read, written, moved or removed, with that entry's name ("" for the
	// whole folder), after RootReady (mobilebackup2.BackupOptions.EntryReady): the store
	// goes on cloning the prefix folders while the device diffs and uploads.
	EntryReady func(ctx context.Context, name string) error
	// UDID of the device; "" picks the only connected device.
	UDID string
	// Devices finds and connects the device (nil = usbmuxd alone); a Host adds built-in
	// Wi-Fi discovery.
	Devices *device.Host
	// Root is the backup root directory; the backup is written to Root/<UDID>/.
	Root string
	// Full forces a full backup; by default the device backs up incrementally when Root/<UDID>
	// holds its previous finished backup.
	Full bool
	// Events receives progress. It is called from the engine's goroutines (serialised, never
	// concurrently) and must return quickly; see mobilebackup2.ChannelSink.
	Events func(mobilebackup2.Event)
	// Now is the clock (nil = time.Now). It stamps events and Info.plist's Last Backup Date.
	Now func() time.Time
	// Log receives diagnostics (nil = discard).
	Log *slog.Logger
	// LockAttempts and LockRetry govern the sync-lock retries (default 50 × 200 ms, as
	// iTunes-compatible hosts do).
	LockAttempts int
	LockRetry    time.Duration
	// SyncEachFile fsyncs each uploaded file (see mobilebackup2.BackupOptions).
	SyncEachFile bool
	// Staging says Root is the snapshot store's staging folder, discarded unless the run
	// commits: new files are written straight to their final names, created with FileMode
	// (see mobilebackup2.BackupOptions.DirectWrites and FileMode), and where syncfs exists
	// nothing is flushed to disk, Info.plist included: the commit flushes the folder's
	// filesystem before its commit point (DeferSync). Off for --dir.
	Staging  bool
	FileMode fs.FileMode
	// PasscodeCancelWindow: a passcode sheet dismissed sooner than this before a 208 counts
	// as cancelled on the device (not retried). 0 means
	// mobilebackup2.DefaultPasscodeCancelWindow; < 0 turns the distinction off.
	PasscodeCancelWindow time.Duration
	// WiFiProbeEvery is how often a Wi-Fi backup checks that the device still answers
	// (wifi.go); 0 means 20 s. A dead link ends the run within about three intervals.
	WiFiProbeEvery time.Duration
	// PairPrompt, if set, turns on automatic pairing: a device that does not trust this
	// computer is paired first (device.Pair), and PairPrompt tells the user what to do on
	// the device. Nil leaves an unpaired device failing as NotPaired. PairTimeout bounds the
	// wait for Trust (default 2 minutes).
	PairPrompt  func(p device.PairPrompt, name string)
	PairTimeout time.Duration
	// BusyRetries and BusyWait: a device that answers "already in progress" (after a host
	// died mid-run) is asked again this often, this far apart. Defaults 6 × 10 s; < 0 = no
	// retry.
	BusyRetries int
	BusyWait    time.Duration
}

// Result describes a finished run.
type Result struct {
	UDID     string
	Dir      string // Root/<UDID>
	Device   device.Info
	Backup   mobilebackup2.Result
	Started  time.Time
	Finished time.Time
}

// Notifications the engine observes during a run.
var observed = []string{
	device.NotifySyncCancel, device.NotifySyncSuspend, device.NotifySyncResume, device.NotifyDomainChanged,
	device.NotifyPasscodeShown, device.NotifyPasscodeDismissed,
}

// Backup runs one backup. On failure the error is a *failure.Error (errors.Is with its
// sentinels works), and the last event is EventFailed; on success it is EventFinished.
// Root/<UDID> may then hold a partial backup: callers that need atomicity (the store) give
// a staging root and commit only on success.
func Backup(ctx context.Context, req Request) (res Result, err error) {
	o := startOp(req.Now, req.Log, req.Events)
	now, log, em := o.now, o.log, o.em
	res.Started = now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer o.end(ctx, &err, &res.Finished)
	em.Begin()

	if req.Root == "" {
		return res, errors.New("no backup folder given")
	}
	if err := os.MkdirAll(req.Root, 0o755); err != nil {
		return res, fmt.Errorf("create backup folder: %w", err)
	}

	if req.PairPrompt != nil {
		if err := ensurePaired(ctx, req.Devices, req.UDID, req.PairPrompt, req.PairTimeout); err != nil {
			return res, err
		}
	}
	var info device.Info
	var extras infoExtras
	var entry device.Entry
	l, err := openLink(ctx, req.Devices, req.UDID, em, cancel, now, log, func(sess *device.Session) error {
		entry = sess.Entry
		res.UDID = sess.Entry.UDID
		res.Dir = filepath.Join(req.Root, res.UDID)
		var err error
		if info, err = sess.Info(ctx); err != nil {
			return fmt.Errorf("read device information: %w", err)
		}
		// One UDID everywhere: lockdown's. usbmuxd may list the dashless USB serial
		// (libimobiledevice #1381); folder, TargetIdentifier and Info.plist all use this.
		if u := device.CanonicalUDID(info.UDID); u != "" {
			info.UDID = u
			res.UDID = u
			res.Dir = filepath.Join(req.Root, u)
		}
		res.Device = info
		readApps(ctx, sess, log, &extras)
		return ctx.Err()
	})
	if err != nil {
		return res, err
	}
	defer l.close(ctx)
	l.client.HashUploads(req.ContentHash, req.ContentHashed)
	if err := l.lockSync(ctx, req.LockAttempts, req.LockRetry); err != nil {
		return res, err
	}
	readAFCFiles(ctx, l.afc, log, &extras)
	// Nothing above wrote under Root (MkdirAll of the existing Root only looks). Without
	// RootReady, Info.plist is written now, before the Backup request, as always. With it,
	// Info.plist and everything mobilebackup2 does in the folder wait until the device's
	// first message that touches the folder (BackupOptions.Ready): the store's clone then
	// runs while the device snapshots and scans, not before it is even asked.
	var ready func(context.Context) error
	if req.RootReady == nil {
		if err := writeInfo(req.Root, info, extras, now(), !req.Staging); err != nil {
			return res, err
		}
	} else {
		ready = func(ctx context.Context) error {
			if err := req.RootReady(ctx); err != nil {
				return err
			}
			if err := writeInfo(req.Root, info, extras, now(), !req.Staging); err != nil {
				return failure.FromOS(fmt.Errorf("write Info.plist: %w", err))
			}
			return nil
		}
	}

	if entry.Transport == device.WiFi {
		every := req.WiFiProbeEvery
		if every <= 0 {
			every = defaultProbeEvery
		}
		stop := watchWiFi(ctx, entry, every, func(err error) { cancel(linkLostOverWiFi(err)) })
		defer stop()
	}
	o.protocolEnded = true
	res.Backup, err = l.client.Backup(ctx, mobilebackup2.BackupOptions{
		Root:                 req.Root,
		UDID:                 res.UDID,
		ForceFullBackup:      req.Full,
		Events:               em,
		SyncEachFile:         req.SyncEachFile,
		DirectWrites:         req.Staging,
		DeferSync:            req.Staging,
		FileMode:             req.FileMode,
		DeviceUsed:           info.DataUsed,
		PasscodeCancelWindow: cancelWindow(req.PasscodeCancelWindow),
		BusyRetries:          busyRetries(req.BusyRetries),
		BusyWait:             busyWait(req.BusyWait),
		DeviceCapacity:       info.DiskCapacity,
		Ready:                ready,
		EntryReady:           req.EntryReady,
	})
	if len(res.Backup.Unreadable) > 0 && err == nil {
		describeUnreadable(ctx, res.Dir, res.Backup.Unreadable)
	}
	l.release(ctx) // protocol.md §11.10: unlock and syncDidFinish, then Disconnect
	return res, err
}

// classify maps device-layer errors to the typed error, then defers to mobilebackup2.
func classify(ctx context.Context, err error) *failure.Error {
	var e *failure.Error
	if errors.As(err, &e) {
		return e
	}
	if ctx.Err() != nil {
		return mobilebackup2.Classify(ctx, err)
	}
	code := failure.Unknown
	switch {
	case errors.Is(err, device.ErrNotPaired):
		code = failure.NotPaired
	case errors.Is(err, device.ErrLockBusy):
		code = failure.DeviceBusy
	case errors.Is(err, device.ErrLocked):
		code = failure.DeviceLocked
	case errors.Is(err, device.ErrNotFound), errors.Is(err, device.ErrNoUsbmuxd):
		code = failure.NotConnected
	default:
		return mobilebackup2.Classify(ctx, err)
	}
	return failure.New(code, err)
}

// writeInfo writes Root/<UDID>/Info.plist (backup-format.md §1.2) atomically, and durably
// unless the folder is flushed as a whole later (a staging folder: a file and a directory
// fsync there cost 0.1 s while the store's clone fills the journal, and the device waits for
// them). The device folder is created if needed and must not be a symlink.
func writeInfo(root string, info device.Info, x infoExtras, now time.Time, durable bool) error {
	dir := filepath.Join(root, info.UDID)
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("create device folder: %w", err)
		}
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	guid := make([]byte, 16)
	if _, err := rand.Read(guid); err != nil {
		return err
	}
	itv := info.MinITunesVersion
	if itv == "" {
		itv = "10.0.1"
	}
	installed := x.Installed
	if installed == nil {
		installed = []string{}
	}
	b, err := backupfmt.Info{
		Applications:          x.Applications,
		BuildVersion:          info.BuildVersion,
		DeviceName:            info.Name,
		DisplayName:           info.Name,
		GUID:                  strings.ToUpper(hex.EncodeToString(guid)),
		ICCID:                 info.ICCID,
		IMEI:                  info.IMEI,
		MEID:                  info.MEID,
		PhoneNumber:           info.PhoneNumber,
		InstalledApplications: installed,
		LastBackupDate:        now.UTC(),
		ProductType:           info.ProductType,
		ProductVersion:        info.ProductVersion,
		SerialNumber:          info.SerialNumber,
		TargetIdentifier:      info.UDID,
		TargetType:            "Device",
		UniqueIdentifier:      strings.ToUpper(info.UDID),
		IBooksData2:           x.IBooksData2,
		ITunesFiles:           x.ITunesFiles,
		ITunesSettings:        info.ITunesSettings,
		ITunesVersion:         itv,
	}.Marshal()
	if err != nil {
		return err
	}
	if !durable {
		return atomicfile.WriteFileFlushedLater(filepath.Join(dir, "Info.plist"), b, 0o644)
	}
	return atomicfile.WriteFile(filepath.Join(dir, "Info.plist"), b, 0o644)
}

// op is what Backup and Restore share around a run: the clock, the log and the event
// emitter, and one place where a failure is classified and reported.
type op struct {
	now func() time.Time
	log *slog.Logger
	em  *mobilebackup2.Emitter
	// protocolEnded is set once mobilebackup2 has emitted the final event itself.
	protocolEnded bool
}

// startOp fills in the defaults: the system clock, a log that discards.
func startOp(now func() time.Time, log *slog.Logger, events func(mobilebackup2.Event)) *op {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &op{now: now, log: log, em: mobilebackup2.NewEmitter(events, now)}
}

// end stamps the finish time and, on failure, classifies *err once (replacing it) and emits
// EventFailed unless mobilebackup2 already ended the run with its own event.
func (o *op) end(ctx context.Context, err *error, finished *time.Time) {
	*finished = o.now()
	if *err == nil {
		return
	}
	e := classify(ctx, *err)
	*err = e
	if !o.protocolEnded {
		o.em.Failed(e)
	}
}
