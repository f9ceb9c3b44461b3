// Package mobilebackup2 is the host side of com.apple.mobilebackup2: the DeviceLink version
// exchange, the Hello, the Backup request and the loop that serves every file-system request
// the device makes while it backs itself up into a folder on this computer.
//
// It speaks over any io.ReadWriter (service TLS in production, net.Pipe in tests) and knows
// nothing of go-ios, lockdown or the snapshot store.
//
// Safety rules, in order of importance:
//   - every device-supplied path is validated before any filesystem call (ValidatePath) and
//     no symlink is followed on the way;
//   - an existing file is never opened for writing: uploads and copies create new files
//     (O_EXCL), a temp file renamed into place or, where a partial file under its final
//     name is harmless (Snapshot/, a store's staging folder), the final name after an
//     unlink, so files hard-linked into earlier snapshots never change;
//   - memory stays bounded whatever the file sizes and counts (streams, bounded frames).
package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"snapback/internal/atomicfile"
	"snapback/internal/devicelink"
	"snapback/internal/failure"
	"snapback/internal/plistio"
)

// HostVersion is the DeviceLink major version this host speaks (as libimobiledevice ≥ 1.4).
const HostVersion = 400

// SupportedProtocolVersions are offered in the Hello.
var SupportedProtocolVersions = []float64{2.0, 2.1}

// Client is one mobilebackup2 session. It is not safe for concurrent use: one goroutine runs
// Handshake, then Backup, then Disconnect.
type Client struct {
	contentHash contentHash // see HashUploads

	rw  io.ReadWriter
	dl  *devicelink.Conn
	now func() time.Time

	// ProtocolVersion is what the device chose in the Hello (valid after Handshake).
	ProtocolVersion float64
	// DeviceVersion is the DeviceLink major version the device announced.
	DeviceVersion int64
}

// NewClient wraps rw. now stamps events; nil means time.Now (the caller's clock should be
// injected in production code so tests can control it).
func NewClient(rw io.ReadWriter, now func() time.Time) *Client {
	if now == nil {
		now = time.Now
	}
	return &Client{rw: rw, dl: devicelink.NewConn(rw), now: now}
}

// watch makes ctx cancellation unblock any read or write on the connection: it closes the
// connection (or, for conns that cannot be closed, sets an expired deadline). The returned
// stop function must be called when the guarded operation ends.
func (c *Client) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		if d, ok := c.rw.(interface{ SetDeadline(time.Time) error }); ok {
			_ = d.SetDeadline(time.Unix(1, 0))
		}
		if cl, ok := c.rw.(io.Closer); ok {
			_ = cl.Close()
		}
	})
}

// Handshake runs the DeviceLink version exchange (accepting device majors up to 400) and the
// mobilebackup2 Hello. Errors are classified (*failure.Error).
func (c *Client) Handshake(ctx context.Context) (err error) {
	defer c.watch(ctx)()
	defer func() { err = orNil(Classify(ctx, err)) }()

	msg, err := c.dl.ReadMessage()
	if err != nil {
		return fmt.Errorf("version exchange: %w", err)
	}
	if msg.Name() != devicelink.VersionExchange {
		return protoErr("expected %s, got %s", devicelink.VersionExchange, msg.Name())
	}
	major, ok := plistio.Int(msg.Arg(1))
	if !ok {
		return protoErr("version exchange without a major version")
	}
	if major > HostVersion {
		return protoErr("device speaks DeviceLink %d, this host at most %d", major, HostVersion)
	}
	c.DeviceVersion = major
	if err := c.dl.WriteMessage(devicelink.VersionExchange, devicelink.VersionsOk, uint64(HostVersion)); err != nil {
		return fmt.Errorf("version exchange: %w", err)
	}
	msg, err = c.dl.ReadMessage()
	if err != nil {
		return fmt.Errorf("version exchange: %w", err)
	}
	if msg.Name() != devicelink.DeviceReady {
		return protoErr("expected %s, got %s", devicelink.DeviceReady, msg.Name())
	}

	if err := c.dl.SendProcessMessage(map[string]any{
		"MessageName":               "Hello",
		"SupportedProtocolVersions": SupportedProtocolVersions,
	}); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	msg, err = c.dl.ReadMessage()
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	dict, ok := msg.Arg(1).(map[string]any)
	if msg.Name() != devicelink.ProcessMessage || !ok {
		return protoErr("hello: unexpected reply %s", msg.Name())
	}
	code, _ := plistio.Int(dict["ErrorCode"])
	switch {
	case code == 1:
		return protoErr("hello: the device supports none of protocol versions %v", SupportedProtocolVersions)
	case code != 0:
		return DeviceResultError(code, str(dict["ErrorDescription"]))
	}
	v, ok := plistio.Float(dict["ProtocolVersion"])
	if !ok {
		return protoErr("hello: reply has no ProtocolVersion")
	}
	c.ProtocolVersion = v
	return nil
}

// BackupOptions configure one Backup run.
type BackupOptions struct {
	// Root is the backup root: the device writes into Root/<UDID>/.
	Root string
	// UDID is the target (and source) identifier; every device path must start with it.
	UDID string
	// ForceFullBackup asks the device for a full backup; by default it decides (incremental
	// when Root/<UDID> holds a finished backup it recognises).
	ForceFullBackup bool
	// Events receives progress; may be nil. It may be shared with other producers (the
	// notification observer) so passcode events interleave correctly.
	Events *Emitter
	// SyncEachFile fsyncs every uploaded file before its rename. Off by default: the run
	// flushes the whole filesystem once at the end instead (syncfs), which is far cheaper for
	// tens of thousands of files and gives the same guarantee at the commit point.
	SyncEachFile bool
	// DeferSync leaves that final flush to the caller, which must flush Root's filesystem
	// (atomicfile.SyncFS) before anything relies on the backup: the snapshot store's commit
	// does it while it verifies the folder, so the wait for the disk overlaps that work
	// instead of preceding it. Where syncfs does not exist, uploads are still fsynced one
	// by one.
	DeferSync bool
	// DirectWrites says Root is a folder that is thrown away unless the whole run succeeds
	// and is verified (the snapshot store's staging folder): an upload whose final name does
	// not exist yet is then created under that name (O_EXCL) rather than as a temp file
	// renamed into place, one directory operation per file fewer. A crash can then leave a
	// partial file under a final name, which is harmless only because nothing reads such a
	// folder before its commit. Never set it for a folder the user keeps as a backup (--dir):
	// there temp + rename keeps every name either old or complete. Existing names (hard links
	// to committed files, in staging) always go through a temp file and a rename. Uploads
	// into the device's Snapshot/ folder are written under the name the device later moves
	// them to, when that does not exist yet, and the move costs nothing (redirect.go).
	DirectWrites bool
	// FileMode is the permission uploaded and copied files are created with (0 = 0644). The
	// store passes 0444 so its commit need not chmod every new file read-only; the writing
	// descriptor stays writable, and renames and removals need only the folder's permission.
	FileMode fs.FileMode
	// DeviceUsed and DeviceCapacity are the device's used data and total capacity in bytes
	// (lockdown com.apple.disk_usage; 0 = unknown). They bound what a backup can write, so
	// an absurd free-space demand can be told from a real shortage (space.go).
	DeviceUsed, DeviceCapacity int64
	// PasscodeCancelWindow, if > 0, makes a 208 whose passcode sheet went away sooner than
	// this after it appeared CancelledOnDevice instead of DeviceLocked (quirks.go).
	PasscodeCancelWindow time.Duration
	// BusyRetries is how often a Backup refused as "already in progress" (the device still
	// busy with a run whose host vanished) is asked again, BusyWait apart.
	BusyRetries int
	BusyWait    time.Duration
	// Ready, if set, is called once, right before the host first touches the backup folder:
	// before it answers the first device message that reads or writes there (every message
	// but GetFreeDiskSpace, which only asks the filesystem, and the final result), and
	// before it removes a leftover Snapshot folder. Until then Backup leaves the folder
	// alone, so the store can still be cloning the latest backup into it while the device
	// prepares after the Backup request: real devices stay silent for seconds to tens of
	// seconds there while they snapshot and scan ("It can take some time to start",
	// libimobiledevice #1193, the device log meanwhile "looking for things to backup"; backupsim
	// Quirks.ScanDelay). An error ends the backup with that error (the device is left
	// waiting for its reply; the caller then closes the connection).
	Ready func(context.Context) error
	// EntryReady, if set, is called before the host reads, writes, moves or removes anything
	// under a top-level entry of the <UDID> folder, with that entry's name ("3f",
	// "Manifest.db", "Snapshot"; "" for the <UDID> folder as a whole), after Ready. Creating
	// a top-level folder does not wait: a folder that exists is success either way. So the
	// store can go on cloning the prefix folders while the device uploads into Snapshot/,
	// which it moves into them only at the end (an upload written straight under its final
	// name with DirectWrites waits for its prefix folder; see redirect.go). An error ends
	// the backup as Ready's does.
	EntryReady func(ctx context.Context, name string) error
}

// Result describes a successful run (or what was known when it failed).
type Result struct {
	ErrorCode     int64  // device's final ErrorCode
	Description   string // device's final ErrorDescription
	FilesReceived int64
	BytesReceived int64
	FilesSent     int64 // files sent back to the device (Status.plist, Manifest.db … of the previous backup)
	BytesSent     int64
	FullBackup    bool   // Status.plist IsFullBackup
	SnapshotState string // Status.plist SnapshotState
	BackupUUID    string // Status.plist UUID
	// Unreadable lists files the device could not read and sent an error block for
	// (pymobiledevice3 #755); the backup itself still succeeds. Engine fills Domain and
	// RelativePath from Manifest.db where it can.
	Unreadable []UnreadableFile
	// PurgeRequests counts DLMessagePurgeDiskSpace requests, PurgeGranted those answered
	// with success because the device's demand was inflated (space.go).
	PurgeRequests, PurgeGranted int
}

// Backup sends the Backup request and serves the device until it reports the result.
// It removes a leftover Root/<UDID>/Snapshot first. It succeeds only if the device's
// ErrorCode is 0 and Root/<UDID>/Status.plist says SnapshotState "finished". Every error is
// an *failure.Error, classified once here.
func (c *Client) Backup(ctx context.Context, opt BackupOptions) (res Result, err error) {
	stop := c.watch(ctx)
	defer stop()
	ev := opt.Events
	var s *server
	defer func() {
		if err != nil && s != nil && s.moved {
			s.markInterrupted()
		}
		if err != nil {
			e := Classify(ctx, err)
			ev.Failed(e)
			err = e
			return
		}
		ev.Finished()
	}()

	if opt.Root == "" {
		return res, errors.New("backup: no root directory")
	}
	s = &server{hash: c.contentHash.newHash, landed: c.contentHash.landed,
		dl:     c.dl,
		res:    newResolver(opt.Root, opt.UDID),
		ev:     ev,
		buf:    make([]byte, devicelink.BlockSize),
		sync:   opt.SyncEachFile || !atomicfile.HaveSyncFS,
		stats:  &res,
		tmpID:  int64(os.Getpid()),
		direct: opt.DirectWrites,
		perm:   uint32(opt.FileMode.Perm()),
		space:  spacePolicy{used: opt.DeviceUsed, capacity: opt.DeviceCapacity},
	}
	defer s.redirected.free()
	if opt.Ready == nil {
		if err := s.removeLeftoverSnapshot(); err != nil {
			return res, failure.New(failure.DeviceStopped, err)
		}
	} else {
		s.ready = func() error { return opt.Ready(ctx) }
	}
	if opt.EntryReady != nil {
		s.entry = func(name string) error { return opt.EntryReady(ctx, name) }
	}
	req := map[string]any{
		"MessageName":      "Backup",
		"TargetIdentifier": opt.UDID,
		"SourceIdentifier": opt.UDID,
	}
	if opt.ForceFullBackup {
		req["Options"] = map[string]any{"ForceFullBackup": true}
	}
	ev.SetPhase(PhasePreparing)
	var final map[string]any
	for attempt := 0; ; attempt++ {
		if err := c.dl.SendProcessMessage(req); err != nil {
			return res, fmt.Errorf("send Backup request: %w", err)
		}
		if final, err = s.serve(); err != nil {
			return res, err
		}
		// "Already in progress" right after an interrupted run clears by itself: wait and
		// ask again on the same connection, a bounded number of times.
		code, _ := plistio.Int(final["ErrorCode"])
		retry := code != 0 && attempt < opt.BusyRetries && busyResult(code, str(final["ErrorDescription"]))
		if code == 0 || retry {
			// Uploads the device never moved stay where it put them: a backup that
			// failed is thrown away, so only a success or a retry needs this.
			if err := s.undoRedirects(opt.UDID, false); err != nil {
				return res, err
			}
		}
		if !retry {
			break
		}
		if err := sleepCtx(ctx, opt.BusyWait); err != nil {
			return res, err
		}
	}
	res.ErrorCode, _ = plistio.Int(final["ErrorCode"])
	res.Description = str(final["ErrorDescription"])
	if res.ErrorCode != 0 {
		if s.hostErr != nil {
			// The device's 104 (or any code) after this host failed to write is the host's
			// failure: name it (no space, read-only, I/O), not "the device stopped".
			e := failure.FromOS(s.hostErr)
			e.DeviceCode = res.ErrorCode
			return res, e
		}
		return res, deviceResult(res.ErrorCode, res.Description, ev, opt.PasscodeCancelWindow)
	}
	if err := s.waitReady(); err != nil { // a device that reports success without a message
		return res, err
	}
	if !opt.DeferSync {
		if err := atomicfile.SyncFS(opt.Root); err != nil {
			return res, failure.New(failure.LocalIO, err)
		}
	}
	st, err := s.readStatus()
	if err != nil {
		return res, failure.New(failure.Incomplete, err)
	}
	res.FullBackup, res.SnapshotState, res.BackupUUID = st.IsFullBackup, st.SnapshotState, st.UUID
	if st.SnapshotState != "finished" {
		e := failure.New(failure.Incomplete, nil)
		e.Detail = fmt.Sprintf("Status.plist SnapshotState is %q", st.SnapshotState)
		return res, e
	}
	return res, nil
}

// Disconnect tells the device the session is over. The caller closes the connection.
func (c *Client) Disconnect() error {
	return c.dl.WriteMessage(devicelink.Disconnect, devicelink.EmptyParameter)
}

// status is the part of Status.plist the host reads.
type status struct {
	IsFullBackup  bool
	SnapshotState string
	UUID          string
	Version       string
}

// maxStatusSize bounds Status.plist (real ones are ~200 bytes).
const maxStatusSize = 1 << 20

func (s *server) readStatus() (status, error) {
	var st status
	p, err := s.res.resolve(s.res.udid + "/Status.plist")
	if err != nil {
		return st, err
	}
	f, err := openNoFollow(p)
	if err != nil {
		return st, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStatusSize+1))
	if err != nil {
		return st, err
	}
	if len(b) > maxStatusSize {
		return st, fmt.Errorf("%s: larger than %d bytes", p, maxStatusSize)
	}
	if err := plistio.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", p, err)
	}
	return st, nil
}

// markInterrupted renames <UDID>/Status.plist to Status.plist.interrupted after a run that
// failed once files were being moved into place: the folder then mixes the previous backup
// with parts of the new one, and an old "finished" Status.plist must not make it look
// complete (to readers, or to the device, which then does a full backup next time).
// Renaming changes no file's bytes, so hard-linked snapshots are unaffected.
func (s *server) markInterrupted() {
	p, err := s.res.resolve(s.res.udid + "/Status.plist")
	if err != nil {
		return
	}
	_ = rename(p, p+".interrupted")
}

// waitReady calls BackupOptions.Ready once and then removes a leftover Snapshot folder (which
// Backup leaves alone before Ready). Without Ready it does nothing: Backup already did both.
func (s *server) waitReady() error {
	if s.ready == nil {
		return nil
	}
	if s.readyDone {
		return s.readyErr
	}
	s.readyDone = true
	if s.readyErr = s.ready(); s.readyErr != nil {
		return s.readyErr
	}
	if err := s.removeLeftoverSnapshot(); err != nil {
		s.readyErr = failure.New(failure.DeviceStopped, err)
	}
	return s.readyErr
}

// removeLeftoverSnapshot deletes <UDID>/Snapshot from an interrupted run: the device refuses
// to start (error 104) when it is not empty.
func (s *server) removeLeftoverSnapshot() error {
	p, err := s.res.resolve(s.res.udid + "/Snapshot")
	if err != nil {
		return err
	}
	if err := s.settle(s.res.udid + "/Snapshot"); err != nil {
		return err
	}
	s.res.forget()
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove leftover %s: %w", filepath.Base(p), err)
	}
	// The marker of an earlier interrupted run has done its job (no Status.plist, so the
	// device backs up fully); this run writes a new Status.plist or leaves none.
	if m, err := s.res.resolve(s.res.udid + "/Status.plist.interrupted"); err == nil {
		_ = os.Remove(m)
	}
	return nil
}

func protoErr(format string, args ...any) error {
	e := failure.New(failure.Protocol, nil)
	e.Detail = fmt.Sprintf(format, args...)
	return e
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
