package mobilebackup2

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"snapback/internal/devicelink"
	"snapback/internal/failure"
	"snapback/internal/plistio"
)

// server answers the device's DeviceLink requests during one operation.
type server struct {
	hash   func() hash.Hash // content hash computed while files stream in; nil = none
	landed func(Landed)     // receives each landed file (HashUploads)
	dl     *devicelink.Conn
	res    resolver
	// tree holds the backup folder's directories open for the per-file work (uploads, moves,
	// removals, directory creation): see dirtree.go. serve creates it from res if unset.
	tree *dirTree
	// direct lets an upload whose final name does not exist yet be created under that name
	// instead of a temp file plus a rename, and one into the device's Snapshot/ folder be
	// written under its final name (BackupOptions.DirectWrites). redirected holds the latter
	// whose move has not come yet, stagedUsed ends them (redirect.go).
	direct     bool
	redirected idSet
	stagedUsed bool
	// perm is the permission of created files (BackupOptions.FileMode; 0 = 0644).
	perm uint32
	// fw is the one writer every upload streams through (no allocation per file), wbuf its
	// write buffer.
	fw   errWriter
	wbuf []byte
	// files creates the uploads: on Linux it hands out one file object again and again (an
	// object per upload was a fifth of a 200,000-file full backup's allocations).
	files uploadFiles
	// h is the content hash every upload streams through (Reset between files: a new XXH3
	// state per file was 2.7% of a 200,000-file backup's user time), sum its sum's buffer.
	h   hash.Hash
	sum []byte
	// pendingBytes and pendingFiles are upload progress not yet emitted (see addProgress).
	pendingBytes, pendingFiles int64

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
	devName []byte // device-side name of the file being received (a string only when reported)
	// space decides the answers to free-space requests (see space.go).
	space spacePolicy
	// ready is BackupOptions.Ready bound to the run's context (nil = the folder is ready);
	// waitReady calls it once, readyDone and readyErr remember that call.
	ready     func() error
	readyDone bool
	readyErr  error
	// entry is BackupOptions.EntryReady bound to the run's context (nil = always ready);
	// settled holds the entries it said are ready (they stay so: asked once, not per file);
	// entryErr is its first failure, which ends the run once the message is answered.
	entry    func(name string) error
	settled  map[string]bool
	entryErr error
	// settledPrefix is settled for the prefix folders ("00" … "ff"), which every upload
	// asks about twice: a map lookup with its string hash and compare was 3% of a full
	// backup's user CPU (perf, 200,000 files).
	settledPrefix [256]bool
}

// settle waits until the top-level entry of the <UDID> folder that device path p lies in may
// be used (BackupOptions.EntryReady). Its error ends the run. p may not be validated yet: a
// hostile path at worst names an entry that is not a folder of the latest backup (ready at
// once) or has it cloned a little earlier.
func (s *server) settle(p string) error {
	if s.entry == nil {
		return nil
	}
	rest, _ := strings.CutPrefix(p, s.res.udid)
	rest = strings.TrimPrefix(rest, "/")
	top, _, _ := strings.Cut(rest, "/")
	prefix, isPrefix := prefixIndex(top)
	if s.entryErr != nil || isPrefix && s.settledPrefix[prefix] || !isPrefix && s.settled[top] {
		return s.entryErr
	}
	if s.entryErr = s.entry(top); s.entryErr == nil {
		if isPrefix {
			s.settledPrefix[prefix] = true
		} else {
			if s.settled == nil {
				s.settled = map[string]bool{}
			}
			s.settled[top] = true
		}
	}
	return s.entryErr
}

// prefixIndex is the value of a prefix folder's name, two lower-case hex digits.
func prefixIndex(name string) (int, bool) {
	if len(name) != 2 {
		return 0, false
	}
	hi, ok1 := lowerHex(name[0])
	lo, ok2 := lowerHex(name[1])
	return int(hi)<<4 | int(lo), ok1 && ok2
}

// serve answers device messages until the final DLMessageProcessMessage, whose dictionary
// it returns. Every request gets a reply, so the device never waits on the host.
func (s *server) serve() (map[string]any, error) {
	if s.tree == nil {
		s.tree = newDirTree(s.res.root, s.res.udid)
	}
	defer s.tree.close()
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
	defer func() {
		// The folder could not be prepared (settle): the device had its reply, the run ends.
		if err == nil && s.entryErr != nil {
			done, final, err = true, nil, s.entryErr
		}
	}()
	// The path resolver (downloads, folder listings, Status.plist) trusts verified folders
	// for one message only, so a folder swapped for a symlink by some local process is
	// caught at the next message at the latest. The per-file work goes through s.tree's
	// descriptors instead, which never follow such a swap at all.
	s.res.forget()
	s.tree.trim()
	s.progress(msg)
	switch msg.Name() {
	case devicelink.GetFreeDiskSpace, devicelink.ProcessMessage, devicelink.Disconnect:
		// These never touch the backup folder: answered while it may still be prepared.
	default:
		// Every other message, known or not, may read or write the folder.
		if err := s.waitReady(); err != nil {
			return true, nil, err
		}
	}
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
	if err := s.settle(p); err != nil {
		return 0, nil, err
	}
	if ferr := s.undoRedirects(p, false); ferr != nil {
		return 0, ferr, nil
	}
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

// errWriter writes an upload to its file (none: discard) and its hash, and remembers the
// file's error so it can be told from a stream error. As a devicelink.BlockReader it takes
// the device's blocks (32 KiB at most) straight from the connection into buf and writes
// them out once buf is full or the file ends: one write(2) per file up to len(buf) instead
// of one per block.
type errWriter struct {
	f   uploadFile
	h   hash.Hash
	buf []byte // pending bytes; cap is the write size
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.f == nil || e.err != nil {
		return len(p), e.err
	}
	if e.h != nil {
		e.h.Write(p)
	}
	total := len(p)
	for len(p) > 0 {
		if len(e.buf) == cap(e.buf) {
			if e.flush(); e.err != nil {
				return 0, e.err
			}
		}
		n := copy(e.buf[len(e.buf):cap(e.buf)], p)
		e.buf = e.buf[:len(e.buf)+n]
		p = p[n:]
	}
	return total, nil
}

func (e *errWriter) ReadBlock(r io.Reader, n int64) (int64, error) {
	var done int64
	for done < n {
		if e.f == nil || e.err != nil {
			m, err := io.CopyN(io.Discard, r, n-done)
			return done + m, err
		}
		if len(e.buf) == cap(e.buf) {
			e.flush()
			continue
		}
		free := e.buf[len(e.buf):cap(e.buf)]
		if int64(len(free)) > n-done {
			free = free[:n-done]
		}
		m, err := io.ReadFull(r, free)
		if e.h != nil {
			e.h.Write(free[:m])
		}
		e.buf = e.buf[:len(e.buf)+m]
		done += int64(m)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// flush writes the pending bytes; a failure is kept in err.
func (e *errWriter) flush() {
	if len(e.buf) > 0 && e.f != nil && e.err == nil {
		_, e.err = e.f.Write(e.buf)
	}
	e.buf = e.buf[:0]
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
	defer s.flushProgress() // also when the stream breaks: the failure event carries the totals
	var lastErr error
	for {
		// The device-side name, reported only for files the device cannot read.
		devName, err := s.dl.ReadNameInto(s.devName[:0])
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
	s.flushProgress()
	if lastErr != nil {
		return s.dl.SendStatus(errCode(lastErr), errText(lastErr), nil)
	}
	return s.dl.SendStatus(0, "", nil)
}

// uploadWriteSize is the largest write(2) of an upload: files up to this size are written
// with one call, larger ones in calls of this size. Not larger: the kernel's copy into the
// page cache reads the buffer back, and one that still sits in the CPU's L2 cache makes
// that copy markedly cheaper (1 MiB cost ~15% more system time than 128 KiB for 500 MB of
// 100 KB files on a journaled ext4, measured side by side).
const uploadWriteSize = 128 << 10

// Upload progress is emitted once per progressFiles files or progressBytes bytes and at the
// end of every upload batch, not per file: each event wakes the consumer's goroutine, which
// for 10⁵ small files cost more CPU (futex wake-ups and scheduler spinning) than writing
// them. The figures are totals, so nothing is lost by emitting fewer.
const (
	progressFiles = 256
	progressBytes = 8 << 20
)

func (s *server) addProgress(bytes int64, landed bool) {
	s.pendingBytes += bytes
	if landed {
		s.pendingFiles++
	}
	if s.pendingFiles >= progressFiles || s.pendingBytes >= progressBytes {
		s.flushProgress()
	}
}

func (s *server) flushProgress() {
	if s.pendingBytes == 0 && s.pendingFiles == 0 {
		return
	}
	b, n := s.pendingBytes, s.pendingFiles
	s.pendingBytes, s.pendingFiles = 0, 0
	s.ev.update(EventProgress, func(e *Event) {
		e.BytesDone += b
		e.FilesDone += n
	})
}

// receiveFile reads one file body into a new file and, unless it was created under its
// final name, renames it into place on SUCCESS. ferr is a local failure (reported in the
// status reply, the stream stays in sync); err is a stream failure.
//
// Every step is relative to the parent directory's descriptor (dirTree): one openat, the
// writes, a close and at most one renameat per file, and no stat.
func (s *server) receiveFile(name string) (ferr, err error) {
	// Before the parent is opened: a prefix folder the clone has not reached yet may not
	// exist, and a device may upload into it without creating it first.
	if err := s.settle(name); err != nil {
		return nil, err
	}
	var (
		f          uploadFile
		d          dirHandle
		base       string
		created    string // the name f has in d
		final      bool
		redirected bool
		id         blobID
		finalPath  string // where a redirected upload lands
	)
	if s.direct {
		if id, redirected = redirectable(s.res.udid, name); redirected {
			if f, d, finalPath, redirected, err = s.createRedirected(name, id); err != nil {
				return nil, err
			}
		}
	}
	if redirected {
		base = finalPath[strings.LastIndexByte(finalPath, '/')+1:]
		created, final = base, true
	} else {
		if ferr = s.undoRedirects(name, false); ferr == nil {
			d, base, ferr = s.tree.parentOf(name, false)
		}
		s.noteStaged(name, false)
		if ferr == nil {
			f, created, final, ferr = s.createUpload(d, base, name)
		}
	}
	if s.wbuf == nil {
		s.wbuf = make([]byte, 0, uploadWriteSize)
	}
	s.fw = errWriter{f: f, buf: s.wbuf[:0]}
	if f != nil && s.hash != nil {
		if s.h == nil {
			s.h = s.hash()
		} else {
			s.h.Reset()
		}
		s.fw.h = s.h
	}
	res, err := s.dl.ReadFileBody(&s.fw)
	s.stats.BytesReceived += res.Bytes
	if err == nil && res.Code == devicelink.CodeSuccess {
		s.fw.flush()
	}
	if s.fw.err != nil && (err == nil || err == s.fw.err) {
		// A local write failure (disk full…): devicelink drained the file, the stream is in
		// sync, the device hears about it in the status reply.
		ferr, err = s.fw.err, nil
	}
	landed := false
	defer func() { s.addProgress(res.Bytes, landed) }()
	if f == nil {
		return ferr, err
	}
	// Every path below closes f; the Landed report, which may carry f's FileInfo, is made
	// before this returns.
	defer s.files.reuse(f)
	h := s.fw.h
	s.fw = errWriter{}
	if err == nil && res.Code == devicelink.CodeErrorRemote {
		s.noteUnreadable(name, res.Err)
	}
	if err != nil || ferr != nil || res.Code != devicelink.CodeSuccess {
		// Stream broke, the write failed, or the device gave up on this file
		// (ERROR_REMOTE): keep nothing.
		f.Close()
		s.removeFailed(d, created, name)
		return ferr, err
	}
	var fi fs.FileInfo
	if h != nil {
		fi, _ = f.Stat() // before the close and rename; the inode, size and mtime stay
	}
	if ferr = s.closeUpload(f, d, created, name); ferr != nil {
		return ferr, nil
	}
	if redirected {
		s.redirected.add(id)
	}
	if !final {
		// rename(2) refuses to replace a directory with a file (EISDIR), so no check is needed.
		if ferr = renameAt(d, created, d, base); ferr != nil {
			s.removeFailed(d, created, name)
			return s.tree.pathErr("rename", name, ferr), nil
		}
	}
	if s.landed != nil {
		l := Landed{Name: name}
		if redirected {
			l.Name = finalPath
		}
		if fi != nil {
			s.sum = h.Sum(s.sum[:0])
			l.Info, l.Sum = fi, s.sum
		}
		s.landed(l)
	}
	s.stats.FilesReceived++
	landed = true
	return nil, nil
}

// createUpload creates the file an upload to device path name (base in directory d) is
// written to: created is its name in d, final says it is already base.
//
//   - Inside <UDID>/Snapshot/ files are transient: the device moves them into place later and
//     the folder is removed before every run, so each is created under its own name; an
//     existing name is unlinked first, which never changes the inode behind it (an earlier
//     snapshot's hard link keeps its bytes), and a symlink there is removed, not followed.
//   - With direct (a snapshot store's staging folder, BackupOptions.DirectWrites) a file
//     whose name does not exist yet is created under it with O_EXCL. A name that exists (in
//     staging: a hard link to a committed file) goes through a temp file like everything
//     else, so a file the device then fails to send keeps its previous version.
//   - Everything else lands through a temp file and an atomic rename, so an interrupted run
//     never leaves a partial file under a final name in a folder that must stay a backup.
func (s *server) createUpload(d dirHandle, base, name string) (f uploadFile, created string, final bool, err error) {
	perm := s.filePerm()
	if strings.HasPrefix(name, s.res.udid) && strings.HasPrefix(name[len(s.res.udid):], "/Snapshot/") {
		f, err = s.files.create(d, base, perm)
		if errors.Is(err, fs.ErrExist) {
			if err = unlinkAt(d, base); err == nil {
				f, err = s.files.create(d, base, perm)
			}
		}
		if err != nil {
			return nil, "", false, s.tree.pathErr("create", name, err)
		}
		return f, base, true, nil
	}
	if s.direct {
		f, err = s.files.create(d, base, perm)
		if err == nil {
			return f, base, true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, "", false, s.tree.pathErr("create", name, err)
		}
	}
	f, created, err = s.createTemp(d)
	if err != nil {
		return nil, "", false, s.tree.pathErr("create", name, err)
	}
	return f, created, false, nil
}

func (s *server) filePerm() uint32 {
	if s.perm == 0 {
		return 0o644
	}
	return s.perm
}

// createTemp creates a new, empty file in d with O_EXCL: never an existing file, so a file
// hard-linked into an earlier snapshot can never be opened for writing. Names come from a
// per-run counter (cheaper than os.CreateTemp's random names plus a chmod).
func (s *server) createTemp(d dirHandle) (uploadFile, string, error) {
	var buf [64]byte
	for range 1000 {
		s.tmpSeq++
		b := append(buf[:0], ".snapback-upload-"...)
		b = strconv.AppendInt(b, s.tmpID, 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, s.tmpSeq, 10)
		name := string(b)
		f, err := s.files.create(d, name, s.filePerm())
		if errors.Is(err, fs.ErrExist) {
			continue // left by an interrupted run with the same id: skip it
		}
		return f, name, err
	}
	return nil, "", fs.ErrExist
}

// closeUpload syncs (if asked) and closes f, created as name in d. On failure it is removed.
func (s *server) closeUpload(f uploadFile, d dirHandle, name, dev string) error {
	var err error
	if s.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.removeFailed(d, name, dev)
	}
	return err
}

// removeFailed unlinks name in d, a failed upload or copy for device path dev. Should even
// that fail, an unhashed file stays in the folder, possibly on the inode of a file whose
// sum was reported: the hash receiver hears of it (Landed without a sum), so the store
// vouches for no upload's stat in this run (store's sumTable.landed).
func (s *server) removeFailed(d dirHandle, name, dev string) {
	if err := unlinkAt(d, name); err != nil && !errors.Is(err, fs.ErrNotExist) && s.landed != nil {
		s.landed(Landed{Name: dev})
	}
}

// --- simple requests ---

func (s *server) contentsOfDirectory(msg devicelink.Message) error {
	p, _ := msg.Arg(1).(string)
	if err := s.settle(p); err != nil {
		return err
	}
	if err := s.undoRedirects(p, false); err != nil {
		return s.dl.SendStatus(errCode(err), errText(err), map[string]any{})
	}
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
	if err := s.mkdirAll(p); err != nil {
		s.noteHostErr(err)
		return s.dl.SendStatus(errCode(err), errText(err), nil)
	}
	return s.dl.SendStatus(0, "", nil)
}

// mkdirAll creates device directory p and its missing parents (mode 0755), refusing
// symlinks on the way. An existing directory is success.
func (s *server) mkdirAll(p string) error {
	if err := checkPath(p, s.res.udid); err != nil {
		return err
	}
	if strings.Count(p, "/") > 1 { // inside a top-level folder, which must be cloned first
		if err := s.settle(p); err != nil {
			return err
		}
	}
	if err := s.undoRedirects(p, true); err != nil {
		return err
	}
	s.noteStaged(p, false)
	_, err := s.tree.dir(p, true)
	return err
}

func (s *server) moveItems(msg devicelink.Message) error {
	for _, p := range devicelink.MovesOf(msg.Arg(1)) {
		s.moved = true
		if err := s.move(p.Src, p.Dst); err != nil {
			s.noteHostErr(err)
			return s.dl.SendStatus(errCode(err), errText(err), nil)
		}
	}
	return s.dl.SendStatus(0, "", nil)
}

// move renames src over dst, deleting dst first (recursively for a directory). Renaming
// never writes into a file, so hard links held by snapshots keep their bytes, and renameat
// acts on a symlink itself, never on what it points to, so neither name needs an lstat: a
// file move costs one renameat. Only when the rename is refused because dst is a directory
// is dst looked at, removed, and the rename tried again.
func (s *server) move(src, dst string) error {
	if err := checkPath(src, s.res.udid); err != nil {
		return err
	}
	if err := checkPath(dst, s.res.udid); err != nil {
		return err
	}
	if src == dst || s.movedInPlace(src, dst) {
		return nil
	}
	if err := s.prepareTransfer(src, dst); err != nil {
		return err
	}
	// Descriptors of a directory being renamed or replaced would keep naming it under its
	// new name (or none): drop them first.
	s.tree.forgetIfOpen(src)
	s.tree.forgetIfOpen(dst)
	sd, sn, err := s.tree.parentOf(src, false)
	if err != nil {
		return err
	}
	dd, dn, err := s.tree.parentOf(dst, false)
	if err != nil {
		return err
	}
	err = renameAt(sd, sn, dd, dn)
	if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		// A directory at dst is replaced as a whole; removeAllAt follows no symlink either.
		if m, merr := modeAt(dd, dn); merr == nil && m.IsDir() {
			if err := removeAllAt(dd, dn); err != nil {
				return s.tree.pathErr("remove", dst, err)
			}
			err = renameAt(sd, sn, dd, dn)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: s.tree.host(src), New: s.tree.host(dst), Err: err}
	}
	return nil
}

func (s *server) removeItems(msg devicelink.Message) error {
	list, _ := msg.Arg(1).([]any)
	var last error
	for _, item := range list {
		p, _ := item.(string)
		err := s.remove(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			last = err
		}
	}
	if last != nil {
		return s.dl.SendStatus(errCode(last), errText(last), nil)
	}
	return s.dl.SendStatus(0, "", nil)
}

// remove deletes device path p: a file with one unlinkat, a directory with everything in
// it. A symlink is removed itself, never followed.
func (s *server) remove(p string) error {
	if err := checkPath(p, s.res.udid); err != nil {
		return err
	}
	if err := s.settle(p); err != nil {
		return err
	}
	if err := s.undoRedirects(p, false); err != nil {
		return err
	}
	s.moved = s.moved || !strings.HasPrefix(p, s.res.udid+"/Snapshot/") && p != s.res.udid+"/Snapshot"
	s.tree.forgetIfOpen(p)
	d, n, err := s.tree.parentOf(p, false)
	if err != nil {
		return err
	}
	if err := removeAllAt(d, n); err != nil {
		return s.tree.pathErr("remove", p, err)
	}
	return nil
}

func (s *server) copyItem(msg devicelink.Message) error {
	src, _ := msg.Arg(1).(string)
	dst, _ := msg.Arg(2).(string)
	if err := s.copy(src, dst); err != nil {
		return s.dl.SendStatus(errCode(err), errText(err), nil)
	}
	return s.dl.SendStatus(0, "", nil)
}

// prepareTransfer readies validated src and dst for a move or a copy: both are cloned
// (settle), no redirected upload either could see is left under its final name, and dst
// ends redirects if it is in Snapshot/ (anything may arrive there this way).
func (s *server) prepareTransfer(src, dst string) error {
	if err := s.settle(src); err != nil {
		return err
	}
	if err := s.settle(dst); err != nil {
		return err
	}
	if err := s.undoRedirects(src, false); err != nil {
		return err
	}
	if err := s.undoRedirects(dst, false); err != nil {
		return err
	}
	s.noteStaged(dst, true)
	return nil
}

// copy copies a regular file, or the regular files directly inside a directory (like
// libimobiledevice), always into new files.
func (s *server) copy(src, dst string) error {
	if err := checkPath(dst, s.res.udid); err != nil {
		return err
	}
	if err := s.prepareTransfer(src, dst); err != nil {
		return err
	}
	sd, sn, err := s.tree.parentOf(src, false)
	if err != nil {
		return err
	}
	m, err := modeAt(sd, sn)
	switch {
	case err != nil:
		return s.tree.pathErr("lstat", src, err)
	case m&fs.ModeSymlink != 0:
		return s.tree.pathErr("copy", src, errSymlink)
	case m == 0: // a regular file
		s.tree.forgetIfOpen(dst)
		dd, dn, err := s.tree.parentOf(dst, false)
		if err != nil {
			return err
		}
		return s.copyFile(sd, sn, dd, dn, dst)
	case !m.IsDir():
		return &os.PathError{Op: "copy", Path: src, Err: syscall.EINVAL}
	}
	from, err := s.tree.dir(src, false)
	if err != nil {
		return err
	}
	to, err := s.tree.dir(dst, true)
	if err != nil {
		return err
	}
	entries, err := readDirAt(sd, sn)
	if err != nil {
		return s.tree.pathErr("open", src, err)
	}
	for _, de := range entries {
		if !de.Type().IsRegular() {
			continue
		}
		if err := s.copyFile(from, de.Name(), to, de.Name(), dst+"/"+de.Name()); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies file sn in sd to a new temp file in dd renamed to dn (device path dst).
func (s *server) copyFile(sd dirHandle, sn string, dd dirHandle, dn, dst string) error {
	in, err := openReadAt(sd, sn)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, name, err := s.createTemp(dd)
	if err != nil {
		return s.tree.pathErr("create", dst, err)
	}
	defer s.files.reuse(tmp) // every path below closes tmp
	if _, err := io.CopyBuffer(tmp, struct{ io.Reader }{in}, s.buf); err != nil {
		tmp.Close()
		s.removeFailed(dd, name, dst)
		return err
	}
	if err := s.closeUpload(tmp, dd, name, dst); err != nil {
		return err
	}
	if err := renameAt(dd, name, dd, dn); err != nil {
		s.removeFailed(dd, name, dst)
		return s.tree.pathErr("rename", dst, err)
	}
	if s.landed != nil {
		s.landed(Landed{Name: dst}) // a new file, not hashed: the index reads it
	}
	return nil
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
