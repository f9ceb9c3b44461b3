package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"snapback/internal/devicelink"
	"snapback/internal/failure"
	"snapback/internal/plistio"
)

// RestoreOptions configure one Restore run (protocol.md §7.4, §7.10).
type RestoreOptions struct {
	// Source is the Apple-format backup folder to restore (Info.plist, Manifest.plist,
	// Manifest.db, Status.plist, blobs). Its name does not matter: the device's paths
	// <SourceUDID>/… are mapped onto it. It is served read-only and never written.
	Source string
	// SourceUDID is the SourceIdentifier: the device that made the backup, and the first
	// component of every path the device asks for. "" means TargetUDID.
	SourceUDID string
	// TargetUDID is the device being restored.
	TargetUDID string
	// System restores system files too (RestoreSystemFiles).
	System bool
	// PreserveSettings keeps the device's current settings (RestorePreserveSettings).
	PreserveSettings bool
	// Reboot lets the device reboot when it is done (RestoreShouldReboot).
	Reboot bool
	// RemoveItemsNotRestored deletes items on the device that the backup does not hold.
	RemoveItemsNotRestored bool
	// Password returns the backup password; it is called only when Manifest.plist says the
	// backup is encrypted. nil means no password is available (an encrypted backup then
	// fails with failure.WrongPassword before anything is sent).
	Password func() ([]byte, error)
	// Events receives progress; may be nil (see BackupOptions.Events). BytesDone and
	// FilesDone count what was sent to the device.
	Events *Emitter
}

// manifestFlags is the part of Manifest.plist the host checks before a restore.
type manifestFlags struct {
	IsEncrypted bool
}

// Restore sends the Restore request and serves the device's reads from opt.Source until it
// reports the result. Nothing in opt.Source is ever created, written, moved or removed:
// every request that would write is refused with an error status. It refuses locally (before
// sending anything) unless Status.plist says SnapshotState "finished", like idevicebackup2.
// Every error is an *failure.Error; 207 is failure.WrongPassword, 105 failure.NoSpace (space on the device).
func (c *Client) Restore(ctx context.Context, opt RestoreOptions) (res Result, err error) {
	stop := c.watch(ctx)
	defer stop()
	ev := opt.Events
	defer func() {
		if err != nil {
			e := Classify(ctx, err)
			ev.Failed(e)
			err = e
			return
		}
		ev.Finished()
	}()

	if opt.Source == "" || opt.TargetUDID == "" {
		return res, errors.New("restore: no source folder or target device")
	}
	src := opt.SourceUDID
	if src == "" {
		src = opt.TargetUDID
	}
	base, err := realDir(opt.Source)
	if err != nil {
		return res, failure.New(failure.LocalIO, err)
	}
	res.FullBackup = true
	s := &server{
		dl:       c.dl,
		res:      resolver{root: filepath.Dir(base), udid: src, base: base, dirs: map[string]struct{}{}},
		ev:       ev,
		buf:      make([]byte, devicelink.BlockSize),
		stats:    &res,
		readOnly: true,
	}
	encrypted, err := s.checkSource()
	if err != nil {
		return res, err
	}
	res.SnapshotState = "finished"

	options := map[string]any{
		"RestoreSystemFiles":      opt.System,
		"RestoreShouldReboot":     opt.Reboot,
		"RestoreDontCopyBackup":   true, // the device reads the folder in place; no copy is made
		"RestorePreserveSettings": opt.PreserveSettings,
		"RemoveItemsNotRestored":  opt.RemoveItemsNotRestored,
	}
	if encrypted {
		if opt.Password == nil {
			e := failure.New(failure.WrongPassword, nil)
			e.Detail = "the backup is encrypted and no password was given"
			return res, e
		}
		pw, err := opt.Password()
		if err != nil {
			return res, fmt.Errorf("backup password: %w", err)
		}
		// The plist encoder needs a string; the caller's bytes are cleared, the string
		// lives only until this request is written.
		options["Password"] = string(pw)
		clear(pw)
	}
	if n, err := blobBytes(base); err == nil && n > 0 {
		ev.update(EventProgress, func(e *Event) { e.BytesExpected = n })
	}
	ev.SetPhase(PhasePreparing)
	err = c.dl.SendProcessMessage(map[string]any{
		"MessageName":      "Restore",
		"TargetIdentifier": opt.TargetUDID,
		"SourceIdentifier": src,
		"Options":          options,
	})
	delete(options, "Password")
	if err != nil {
		return res, fmt.Errorf("send Restore request: %w", err)
	}
	final, err := s.serve()
	if err != nil {
		return res, err
	}
	res.ErrorCode, _ = plistio.Int(final["ErrorCode"])
	res.Description = str(final["ErrorDescription"])
	if res.ErrorCode != 0 {
		return res, DeviceResultError(res.ErrorCode, res.Description)
	}
	return res, nil
}

// realDir resolves symlinks in dir once, up front: the resolver then refuses any symlink
// inside the folder, and a link named by the user (a location on another volume) still works.
func realDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", &os.PathError{Op: "restore", Path: dir, Err: errNotDir}
	}
	return real, nil
}

// checkSource does idevicebackup2's local checks: Info.plist present, Status.plist says the
// backup finished, Manifest.plist readable. It reports whether the backup is encrypted.
func (s *server) checkSource() (encrypted bool, err error) {
	notRestorable := func(format string, args ...any) *failure.Error {
		return failure.Newf(failure.Incomplete, format, args...).
			WithFix("choose a complete backup (snapback snapshots lists them); the device was not changed")
	}
	if p, err := s.res.resolve(s.res.udid + "/Info.plist"); err != nil {
		return false, notRestorable("Info.plist: %v", err)
	} else if _, err := os.Lstat(p); err != nil {
		return false, notRestorable("the backup has no Info.plist")
	}
	st, err := s.readStatus()
	if err != nil {
		return false, notRestorable("Status.plist: %v", err)
	}
	if st.SnapshotState != "finished" {
		return false, notRestorable("Status.plist SnapshotState is %q, not \"finished\"", st.SnapshotState)
	}
	var m manifestFlags
	if err := s.readPlist(s.res.udid+"/Manifest.plist", &m); err != nil {
		return false, notRestorable("Manifest.plist: %v", err)
	}
	return m.IsEncrypted, nil
}

// maxManifestPlist bounds Manifest.plist (it holds the application list: a few MB at most).
const maxManifestPlist = 64 << 20

func (s *server) readPlist(p string, v any) error {
	hp, err := s.res.resolve(p)
	if err != nil {
		return err
	}
	f, err := openNoFollow(hp)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestPlist+1))
	if err != nil {
		return err
	}
	if len(b) > maxManifestPlist {
		return fmt.Errorf("larger than %d bytes", maxManifestPlist)
	}
	return plistio.Unmarshal(b, v)
}

// blobBytes sums the sizes of the regular files in the folder (about what the device will
// download; it may skip some), for the progress total. Best effort.
func blobBytes(base string) (int64, error) {
	var n int64
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// errReadOnly answers every write the device asks for during a restore.
var errReadOnly = &os.PathError{Op: "write", Path: "backup", Err: errors.New("read-only: the backup being restored is never modified")}

// refuseWrite answers, during a restore, any request that would change the source folder
// with an error status (refused == true). An upload is read to its end first (and thrown
// away) so the stream stays in sync and the device hears the refusal in the status reply.
func (s *server) refuseWrite(msg devicelink.Message) (refused bool, err error) {
	switch msg.Name() {
	case devicelink.UploadFiles:
		return true, s.discardUpload()
	case devicelink.CreateDirectory, devicelink.MoveItems, devicelink.MoveFiles,
		devicelink.RemoveItems, devicelink.RemoveFiles, devicelink.CopyItem:
		return true, s.dl.SendStatus(devicelink.ErrCodeGeneric, errText(errReadOnly), nil)
	}
	return false, nil
}

func (s *server) discardUpload() error {
	for {
		if _, err := s.dl.ReadName(); err != nil {
			if errors.Is(err, devicelink.ErrStreamEnd) {
				break
			}
			return err
		}
		if _, err := s.dl.ReadName(); err != nil {
			if errors.Is(err, devicelink.ErrStreamEnd) {
				break
			}
			return err
		}
		if _, err := s.dl.ReadFileBody(io.Discard); err != nil {
			if errors.Is(err, devicelink.ErrStreamEnd) {
				break
			}
			return err
		}
	}
	return s.dl.SendStatus(devicelink.ErrCodeGeneric, errText(errReadOnly), nil)
}

// countSent reports one file sent to the device during a restore.
func (s *server) countSent(n int64) {
	s.ev.SetPhase(PhaseTransferring)
	s.ev.update(EventProgress, func(e *Event) {
		e.BytesDone += n
		e.FilesDone++
	})
}
