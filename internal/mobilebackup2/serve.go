package mobilebackup2

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"snapback/internal/devicelink"
	"snapback/internal/failure"
	"snapback/internal/plistio"
)

// server answers the device's DeviceLink requests during one operation.
type server struct {
	hash   func() hash.Hash                 // content hash computed while files stream in; nil = none
	hashed func(fi fs.FileInfo, sum []byte) // receives each landed file's sum
	dl     *devicelink.Conn
	res    resolver
	ev     *Emitter
	buf    []byte // the one 32 KiB buffer every stream reuses
	sync   bool   // fsync each uploaded file
	stats  *Result
	tmpID  int64 // distinguishes this run's temp names
	tmpSeq int64
	// moved is set once the device has moved or removed anything in the backup folder
	// proper: from then on a failure leaves a mix of old and new files.
	moved bool
	// readOnly serves a restore: the folder is the source and must never change, so every
	// request that would write is refused (see refuseWrite), and files sent count as progress.
	readOnly bool
	// hostErr is the first failure of this host's own writes (ENOSPC, EROFS, EIO…). When the
	// device then ends with an error (often 104), this, not the device's code, is the cause.
	hostErr error
	devName string // device-side name of the file being received
	// space decides the answers to free-space requests (see space.go).
	space spacePolicy
}

// serve answers device messages until the final DLMessageProcessMessage, whose dictionary
// it returns. Every request gets a reply, so the device never waits on the host.
func (s *server) serve() (map[string]any, error) {
	for {
		msg, err := s.dl.ReadMessage()
		if err != nil {
			return nil, fmt.Errorf("read device message: %w", err)
		}
		done, final, err := s.handle(msg)
		if err != nil {
			return nil, err
		}
		if done {
			return final, nil
		}
	}
}

// handle dispatches one message. done reports the end of the operation.
func (s *server) handle(msg devicelink.Message) (done bool, final map[string]any, err error) {
	// Verified directories are trusted for one message only (an upload batch of many files
	// in the same folders), so a directory swapped for a symlink by some local process is
	// caught at the next message at the latest, as narrow as the walk's own race window.
	s.res.forget()
	s.progress(msg)
	if s.readOnly {
		if refused, err := s.refuseWrite(msg); refused {
			return false, nil, err
		}
	}
	switch msg.Name() {
	case devicelink.DownloadFiles:
		return false, nil, s.downloadFiles(msg)
	case devicelink.UploadFiles:
		return false, nil, s.uploadFiles(msg)
	case devicelink.GetFreeDiskSpace:
		return false, nil, s.freeSpace()
	case devicelink.PurgeDiskSpace:
		return false, nil, s.purgeDiskSpace(msg)
	case devicelink.ContentsOfDirectory:
		return false, nil, s.contentsOfDirectory(msg)
	case devicelink.CreateDirectory:
		return false, nil, s.createDirectory(msg)
	case devicelink.MoveItems, devicelink.MoveFiles:
		s.ev.SetPhase(PhaseFinishing)
		return false, nil, s.moveItems(msg)
	case devicelink.RemoveItems, devicelink.RemoveFiles:
		return false, nil, s.removeItems(msg)
	case devicelink.CopyItem:
		return false, nil, s.copyItem(msg)
	case devicelink.Disconnect:
		e := failure.New(failure.LinkLost, nil)
		e.Detail = "the device ended the session before reporting a result"
		return true, nil, e
	case devicelink.ProcessMessage:
		d, ok := msg.Arg(1).(map[string]any)
		if !ok {
			return true, nil, protoErr("final message without a dictionary")
		}
		if _, ok := plistio.Int(d["ErrorCode"]); !ok {
			return true, nil, protoErr("final message without an integer ErrorCode")
		}
		return true, d, nil
	default:
		return false, nil, s.dl.SendStatus(-1, "Unsupported message "+msg.Name(), nil)
	}
}

// progress picks up the device's progress real where each message kind carries it.
func (s *server) progress(msg devicelink.Message) {
	idx := -1
	switch msg.Name() {
	case devicelink.DownloadFiles, devicelink.MoveItems, devicelink.MoveFiles, devicelink.RemoveItems, devicelink.RemoveFiles:
		idx = 3
	case devicelink.UploadFiles:
		idx = 2
	}
	if idx < 0 {
		return
	}
	p, ok := plistio.Float(msg.Arg(idx))
	if !ok || p < 0 || p > 100 {
		return
	}
	s.ev.update(EventProgress, func(e *Event) { e.Percent = p })
}

// --- DownloadFiles: host → device ---

func (s *server) downloadFiles(msg devicelink.Message) error {
	list, _ := msg.Arg(1).([]any)
	errs := map[string]any{}
	for _, item := range list {
		p, _ := item.(string)
		if err := s.dl.WriteName(p); err != nil {
			return err
		}
		n, ferr, err := s.sendFile(p)
		if err != nil {
			return err
		}
		if ferr != nil {
			text := errText(ferr)
			if err := s.dl.WriteBlock(devicelink.CodeErrorLocal, []byte(text)); err != nil {
				return err
			}
			errs[p] = map[string]any{"DLFileErrorString": text, "DLFileErrorCode": errCode(ferr)}
			continue
		}
		s.stats.FilesSent++
		s.stats.BytesSent += n
		if s.readOnly {
			s.countSent(n)
		}
	}
	if err := s.dl.WriteTerminator(); err != nil {
		return err
	}
	if len(errs) > 0 {
		return s.dl.SendStatus(devicelink.ErrCodeMultiStatus, "Multi status", errs)
	}
	return s.dl.SendStatus(0, "", nil)
}

// sendFile streams one file. ferr is a local problem reported to the device; err breaks
// the connection. Once data blocks have gone out a read error can only end the file with
// an error block, which is what sendFile's caller does.
func (s *server) sendFile(p string) (n int64, ferr, err error) {
	hp, ferr := s.res.resolve(p)
	if ferr != nil {
		return 0, ferr, nil
	}
	f, ferr := openNoFollow(hp)
	if ferr != nil {
		return 0, ferr, nil
	}
	defer f.Close()
	fi, ferr := f.Stat()
	if ferr != nil {
		return 0, ferr, nil
	}
	if !fi.Mode().IsRegular() {
		return 0, &os.PathError{Op: "open", Path: p, Err: syscall.EISDIR}, nil
	}
	rr := &readErrTracker{r: f}
	n, err = s.dl.WriteFileData(rr, s.buf)
	if rr.err != nil {
		return n, rr.err, nil
	}
	if err != nil {
		return n, nil, err
	}
	return n, nil, s.dl.WriteBlock(devicelink.CodeSuccess, nil)
}

// errWriter remembers the destination's error so it can be told from a stream error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// readErrTracker separates file read errors from connection write errors.
type readErrTracker struct {
	r   io.Reader
	err error
}

func (t *readErrTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
		return n, io.EOF
	}
	return n, err
}

// --- UploadFiles: device → host ---

func (s *server) uploadFiles(msg devicelink.Message) error {
	if total, ok := plistio.Int(msg.Arg(3)); ok && total > 0 {
		s.ev.update(EventProgress, func(e *Event) { e.BytesExpected = total })
	}
	s.ev.SetPhase(PhaseTransferring)
	var lastErr error
	for {
		devName, err := s.dl.ReadName() // device-side name: reported for files the device cannot read
		if err != nil {
			if errors.Is(err, devicelink.ErrStreamEnd) {
				break
			}
			return err
		}
		s.devName = devName
		name, err := s.dl.ReadName()
		if errors.Is(err, devicelink.ErrStreamEnd) {
			break
		}
		if err != nil {
			return err
		}
		ferr, err := s.receiveFile(name)
		if errors.Is(err, devicelink.ErrStreamEnd) {
			break
		}
		if err != nil {
			return err
		}
		if ferr != nil {
			lastErr = ferr
			s.noteHostErr(ferr)
		}
	}
	if lastErr != nil {
		return s.dl.SendStatus(errCode(lastErr), errText(lastErr), nil)
	}
	return s.dl.SendStatus(0, "", nil)
}

// receiveFile reads one file body into a new temp file next to its destination and renames
// it into place on SUCCESS. ferr is a local failure (reported in the status reply, the stream
// stays in sync); err is a stream failure.
func (s *server) receiveFile(name string) (ferr, err error) {
	dst, ferr := s.res.resolveTarget(name)
	// Files inside <UDID>/Snapshot/ are transient: the device moves them into place later and
	// the folder is removed before every run, so they are created under their own name (a new
	// inode, O_EXCL) instead of a temp file plus a rename; one directory operation per file
	// fewer. Everything else lands through a temp file and an atomic rename.
	direct := strings.HasPrefix(name, s.res.udid+"/Snapshot/")
	var tmp *os.File
	if ferr == nil {
		if direct {
			tmp, ferr = createFresh(dst)
		} else {
			tmp, ferr = s.createTemp(filepath.Dir(dst))
		}
	}
	fw := &errWriter{w: io.Discard}
	var h hash.Hash
	if tmp != nil {
		fw.w = tmp
		if s.hash != nil {
			h = s.hash()
			fw.w = io.MultiWriter(tmp, h)
		}
	}
	res, err := s.dl.ReadFileBody(fw)
	s.stats.BytesReceived += res.Bytes
	if fw.err != nil && err == fw.err {
		// A local write failure (disk full…): devicelink drained the file, the stream is in
		// sync, the device hears about it in the status reply.
		ferr, err = fw.err, nil
	}
	// One event per file: bytes, and the file count if it lands.
	landed := false
	defer func() {
		s.ev.update(EventProgress, func(e *Event) {
			e.BytesDone += res.Bytes
			if landed {
				e.FilesDone++
			}
		})
	}()
	if tmp == nil {
		return ferr, err
	}
	if err == nil && res.Code == devicelink.CodeErrorRemote {
		s.noteUnreadable(name, res.Err)
	}
	if err != nil || ferr != nil || res.Code != devicelink.CodeSuccess {
		// Stream broke, the write failed, or the device gave up on this file
		// (ERROR_REMOTE): keep nothing.
		tmp.Close()
		os.Remove(tmp.Name())
		return ferr, err
	}
	var fi fs.FileInfo
	if h != nil {
		fi, _ = tmp.Stat() // before the close and rename; the inode, size and mtime stay
	}
	if direct {
		ferr = s.closeFresh(tmp)
	} else {
		ferr = s.commitTemp(tmp, dst)
	}
	if ferr != nil {
		return ferr, nil
	}
	if fi != nil && s.hashed != nil {
		s.hashed(fi, h.Sum(nil))
	}
	s.stats.FilesReceived++
	landed = true
	return nil, nil
}

// createTemp creates a new, empty file in dir with O_EXCL: never an existing file, so a
// file hard-linked into an earlier snapshot can never be opened for writing. Names come from
// a per-run counter (cheaper than os.CreateTemp's random names plus a chmod).
func (s *server) createTemp(dir string) (*os.File, error) {
	for range 1000 {
		s.tmpSeq++
		name := filepath.Join(dir, fmt.Sprintf(".snapback-upload-%d-%d", s.tmpID, s.tmpSeq))
		f, err := createExcl(name)
		if errors.Is(err, fs.ErrExist) {
			continue // left by an interrupted run with the same id: skip it
		}
		return f, err
	}
	return nil, &os.PathError{Op: "create", Path: dir, Err: fs.ErrExist}
}

// createFresh creates dst as a new file. An existing name is unlinked first, which never
// changes the inode behind it (an earlier snapshot's hard link keeps its bytes); a symlink
// there is removed, not followed (O_EXCL does not follow links).
func createFresh(dst string) (*os.File, error) {
	f, err := createExcl(dst)
	if errors.Is(err, fs.ErrExist) {
		if rerr := os.Remove(dst); rerr != nil {
			return nil, rerr
		}
		f, err = createExcl(dst)
	}
	return f, err
}

// closeFresh finishes a file made by createFresh. On failure it is removed.
func (s *server) closeFresh(f *os.File) (err error) {
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if s.sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return f.Close()
}

// commitTemp closes tmp and renames it over dst. On failure tmp is removed.
func (s *server) commitTemp(tmp *os.File, dst string) error {
	if err := s.closeFresh(tmp); err != nil {
		return err
	}
	// rename(2) refuses to replace a directory with a file (EISDIR), so no check is needed.
	if err := rename(tmp.Name(), dst); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// --- simple requests ---

func (s *server) contentsOfDirectory(msg devicelink.Message) error {
	p, _ := msg.Arg(1).(string)
	dir, err := s.res.resolve(p)
	if err != nil {
		return s.dl.SendStatus(errCode(err), errText(err), map[string]any{})
	}
	out := map[string]any{}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s.dl.SendStatus(errCode(err), errText(err), out)
	}
	for _, de := range entries {
		fi, err := de.Info()
		if err != nil {
			continue
		}
		t := "DLFileTypeUnknown"
		switch {
		case fi.Mode().IsRegular():
			t = "DLFileTypeRegular"
		case fi.IsDir():
			t = "DLFileTypeDirectory"
		}
		out[de.Name()] = map[string]any{
			"DLFileType":             t,
			"DLFileSize":             uint64(fi.Size()),
			"DLFileModificationDate": fi.ModTime(),
		}
	}
	return s.dl.SendStatus(0, "", out)
}

func (s *server) createDirectory(msg devicelink.Message) error {
	p, _ := msg.Arg(1).(string)
	if _, err := s.res.mkdirAll(p); err != nil {
		s.noteHostErr(err)
		return s.dl.SendStatus(errCode(err), errText(err), nil)
	}
	return s.dl.SendStatus(0, "", nil)
}

func (s *server) moveItems(msg devicelink.Message) error {
	pairs, _ := msg.Arg(1).(map[string]any)
	srcs := make([]string, 0, len(pairs))
	for k := range pairs {
		srcs = append(srcs, k)
	}
	sort.Strings(srcs) // deterministic order; the device does not depend on one
	for _, src := range srcs {
		dstName, _ := pairs[src].(string)
		s.moved = true
		if err := s.move(src, dstName); err != nil {
			s.noteHostErr(err)
			return s.dl.SendStatus(errCode(err), errText(err), nil)
		}
	}
	return s.dl.SendStatus(0, "", nil)
}

// move renames src over dst, deleting dst first (recursively for a directory). Renaming
// never writes into a file, so hard links held by snapshots keep their bytes.
func (s *server) move(src, dst string) error {
	hs, err := s.res.resolve(src)
	if err != nil {
		return err
	}
	hd, err := s.res.resolveTarget(dst)
	if err != nil {
		return err
	}
	if hs == hd {
		return nil
	}
	// A directory at dst is replaced as a whole; RemoveAll does not follow a symlink either.
	if fi, err := os.Lstat(hd); err == nil && fi.IsDir() {
		if err := os.RemoveAll(hd); err != nil {
			return err
		}
	}
	return rename(hs, hd)
}

func (s *server) removeItems(msg devicelink.Message) error {
	list, _ := msg.Arg(1).([]any)
	var last error
	for _, item := range list {
		p, _ := item.(string)
		hp, err := s.res.resolve(p)
		if err == nil {
			s.moved = s.moved || !strings.HasPrefix(p, s.res.udid+"/Snapshot/") && p != s.res.udid+"/Snapshot"
			err = os.RemoveAll(hp)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			last = err
		}
	}
	if last != nil {
		return s.dl.SendStatus(errCode(last), errText(last), nil)
	}
	return s.dl.SendStatus(0, "", nil)
}

func (s *server) copyItem(msg devicelink.Message) error {
	src, _ := msg.Arg(1).(string)
	dst, _ := msg.Arg(2).(string)
	if err := s.copy(src, dst); err != nil {
		return s.dl.SendStatus(errCode(err), errText(err), nil)
	}
	return s.dl.SendStatus(0, "", nil)
}

// copy copies a regular file, or the regular files directly inside a directory (like
// libimobiledevice), always into new files.
func (s *server) copy(src, dst string) error {
	hs, err := s.res.resolve(src)
	if err != nil {
		return err
	}
	hd, err := s.res.resolve(dst)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(hs)
	if err != nil {
		return err
	}
	if fi.Mode().IsRegular() {
		return s.copyFile(hs, hd)
	}
	if !fi.IsDir() {
		return &os.PathError{Op: "copy", Path: src, Err: syscall.EINVAL}
	}
	if _, err := s.res.mkdirAll(dst); err != nil {
		return err
	}
	entries, err := os.ReadDir(hs)
	if err != nil {
		return err
	}
	for _, de := range entries {
		if !de.Type().IsRegular() {
			continue
		}
		if err := s.copyFile(filepath.Join(hs, de.Name()), filepath.Join(hd, de.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) copyFile(hs, hd string) error {
	in, err := openNoFollow(hs)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := s.createTemp(filepath.Dir(hd))
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{tmp}, struct{ io.Reader }{in}, s.buf); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	return s.commitTemp(tmp, hd)
}

// --- errors as the device expects them ---

var errNotDir = syscall.ENOTDIR

// errCode maps a local error to the device's error numbers (errno mapped the libimobiledevice way).
func errCode(err error) int64 {
	switch {
	case errors.Is(err, ErrBadPath):
		return devicelink.ErrCodeGeneric
	case errors.Is(err, syscall.ENOENT):
		return devicelink.ErrCodeNoEntry
	case errors.Is(err, syscall.EEXIST):
		return devicelink.ErrCodeExists
	case errors.Is(err, syscall.ENOTDIR):
		return devicelink.ErrCodeNotDir
	case errors.Is(err, syscall.EISDIR):
		return devicelink.ErrCodeIsDir
	case errors.Is(err, syscall.ELOOP):
		return devicelink.ErrCodeLoop
	case errors.Is(err, syscall.EIO):
		return devicelink.ErrCodeIO
	case errors.Is(err, syscall.ENOSPC):
		return devicelink.ErrCodeNoSpace
	}
	return devicelink.ErrCodeGeneric
}

// errText is the short error string sent to the device (no host paths beyond the backup).
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err.Error()
	}
	return strings.TrimSpace(err.Error())
}
