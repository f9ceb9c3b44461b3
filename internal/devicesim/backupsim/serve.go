package backupsim

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/devicelink"
	"snapback/internal/plistio"
)

// DeviceLink version the device announces: what iOS ≥ 14 sends, and what Debian's patched
// idevicebackup2 1.3.0, libimobiledevice 1.4, go-ios and pymobiledevice3 all accept.
const (
	dlVersionMajor = 400
	dlVersionMinor = 0
)

// Upload batching: a batch ends after this many files or bytes, whichever comes first.
const (
	maxBatchFiles = 1000
	maxBatchBytes = 64 << 20
	maxMoveBatch  = 1000 // pairs per MoveItems / paths per RemoveItems
	maxSmallFile  = 4 << 20
	maxHostDB     = 16 << 30 // a host Manifest.db beyond this is not a Manifest.db
)

// Error codes and descriptions as devices report them (protocol.md §7.7).
var errorText = map[int]string{
	1:   "Error copying keychain data",
	100: "Unknown error",
	104: "Error removing snapshot directory",
	105: "Insufficient free disk space on host to back up",
	205: "Error reading backup properties",
	207: "Invalid password (MKBKeyBagUnlock error)",
	208: "Device locked (MBErrorDomain/208)",
	212: "Unable to backup until Setup is finished",
}

func describe(code int) string {
	if s, ok := errorText[code]; ok {
		return s
	}
	return fmt.Sprintf("Simulated error (MBErrorDomain/%d)", code)
}

// errLink marks failures of the connection itself (as opposed to a request that ends with
// an ErrorCode): the session cannot continue.
type linkError struct{ err error }

func (e linkError) Error() string { return e.err.Error() }
func (e linkError) Unwrap() error { return e.err }

func linkErr(err error) error {
	if err == nil {
		return nil
	}
	var le linkError
	if errors.As(err, &le) {
		return err
	}
	return linkError{err}
}

// errReadTimeout is returned by session.read when its timeout passes; the read stays
// outstanding and the next read returns its result.
var errReadTimeout = errors.New("timed out waiting for the host")

type readResult struct {
	m   devicelink.Message
	err error
}

// session is one mobilebackup2 connection. Only the goroutine running Serve uses it; the
// helper goroutine started by read only performs one ReadMessage and hands the result back.
type session struct {
	d       *Device
	c       *devicelink.Conn
	n       Notifier
	pending chan readResult
	q       Quirks // of the Backup request being served
}

type nopNotifier struct{}

func (nopNotifier) Post(string) {}

// Serve runs one mobilebackup2 connection: version exchange, then requests until the host
// sends DLMessageDisconnect or closes the link. rw is closed when Serve returns (and when ctx
// is cancelled), which also ends any read still in flight. n may be nil.
func (d *Device) Serve(ctx context.Context, rw io.ReadWriter, n Notifier) error {
	d.mu.Lock()
	d.counters.Connections++
	d.mu.Unlock()
	if n == nil {
		n = nopNotifier{}
	}
	if cl, ok := rw.(io.Closer); ok {
		stop := context.AfterFunc(ctx, func() { cl.Close() })
		defer stop()
		defer cl.Close()
	}
	s := &session{d: d, c: devicelink.NewConn(rw), n: n}
	err := s.serve(ctx)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// hungUp reports whether err is the host closing the link.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed)
}

func (s *session) serve(ctx context.Context) error {
	if err := s.c.WriteMessage(devicelink.VersionExchange, uint64(dlVersionMajor), uint64(dlVersionMinor)); err != nil {
		return fmt.Errorf("version exchange: %w", err)
	}
	m, err := s.read(ctx, 0)
	if err != nil {
		return fmt.Errorf("version exchange: %w", err)
	}
	if m.Name() != devicelink.VersionExchange || m.Arg(1) != devicelink.VersionsOk {
		return fmt.Errorf("version exchange: host answered %v", []any(m))
	}
	if err := s.c.WriteMessage(devicelink.DeviceReady); err != nil {
		return fmt.Errorf("device ready: %w", err)
	}
	for {
		m, err := s.read(ctx, 0)
		if err != nil {
			if hungUp(err) {
				return nil // between requests, hanging up is how many hosts say goodbye
			}
			return err
		}
		switch m.Name() {
		case devicelink.Disconnect:
			return nil
		case devicelink.ProcessMessage:
			req, _ := m.Arg(1).(map[string]any)
			if err := s.request(ctx, req); err != nil {
				name, _ := req["MessageName"].(string)
				return fmt.Errorf("%s request: %w", name, err)
			}
		default:
			// Hosts send nothing else unprompted; like libimobiledevice, ignore what is not
			// understood rather than tear the link down.
		}
	}
}

// read returns the next control message. timeout > 0 bounds the wait; on timeout the read
// stays in flight and the next call continues it, so the stream never desynchronises.
func (s *session) read(ctx context.Context, timeout time.Duration) (devicelink.Message, error) {
	if s.pending == nil {
		ch := make(chan readResult, 1)
		go func() {
			m, err := s.c.ReadMessage()
			ch <- readResult{m, err}
		}()
		s.pending = ch
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	select {
	case r := <-s.pending:
		s.pending = nil
		if r.err != nil {
			return nil, linkErr(r.err)
		}
		return r.m, nil
	case <-timer:
		return nil, errReadTimeout
	case <-ctx.Done():
		return nil, linkErr(ctx.Err())
	}
}

// status reads the host's DLMessageStatusResponse and returns its code and element 2.
func (s *session) status(ctx context.Context) (int64, devicelink.Message, error) {
	m, err := s.read(ctx, 0)
	if err != nil {
		return 0, nil, err
	}
	if m.Name() != devicelink.StatusResponse {
		return 0, m, linkErr(fmt.Errorf("expected %s, host sent %s", devicelink.StatusResponse, m.Name()))
	}
	code, ok := plistio.Int(m.Arg(1))
	if !ok {
		return 0, m, linkErr(fmt.Errorf("status response without an integer code: %v", []any(m)))
	}
	return code, m, nil
}

func (s *session) request(ctx context.Context, req map[string]any) error {
	name, _ := req["MessageName"].(string)
	switch name {
	case "Hello":
		return s.hello(req)
	case "Backup":
		return s.backupRequest(ctx, req)
	case "Restore":
		return s.restoreRequest(ctx, req)
	case "ChangePassword":
		return s.changePasswordRequest(ctx, req)
	case "Info":
		return s.reply(0, "", s.d.infoContent())
	case "List":
		content, err := s.d.listContent()
		if err != nil {
			return s.reply(100, err.Error(), "")
		}
		return s.reply(0, "", content)
	default:
		return s.reply(1, fmt.Sprintf("Unsupported request %q", name), "")
	}
}

// reply ends a request with a ProcessMessage carrying ErrorCode (and Content for Info/List).
func (s *session) reply(code int, desc, content string) error {
	msg := map[string]any{"MessageName": "Response", "ErrorCode": uint64(code)}
	if code != 0 {
		if desc == "" {
			desc = describe(code)
		}
		msg["ErrorDescription"] = desc
	}
	if content != "" {
		msg["Content"] = content
	}
	return linkErr(s.c.SendProcessMessage(msg))
}

func (s *session) hello(req map[string]any) error {
	offered, _ := req["SupportedProtocolVersions"].([]any)
	best := 0.0
	for _, v := range offered {
		f, ok := plistio.Float(v)
		if ok && (f == 2.0 || f == 2.1) && f > best {
			best = f
		}
	}
	if best == 0 {
		return linkErr(s.c.SendProcessMessage(map[string]any{"MessageName": "Response", "ErrorCode": uint64(1)}))
	}
	return linkErr(s.c.SendProcessMessage(map[string]any{"MessageName": "Response", "ErrorCode": uint64(0), "ProtocolVersion": best}))
}

// backupResult is how a Backup request ended: code 0 or an MBErrorDomain code.
type backupResult struct {
	code int
	desc string
}

func (s *session) backupRequest(ctx context.Context, req map[string]any) error {
	d := s.d
	d.mu.Lock()
	d.counters.BackupRequests++
	d.mu.Unlock()
	if time.Now().Before(d.stuckUntil()) || !d.busy.TryLock() {
		return s.reply(100, "A backup is already in progress", "")
	}
	defer d.busy.Unlock()

	st, res, err := s.backup(ctx, req)
	d.mu.Lock()
	if err != nil {
		if q := d.quirksFor(d.counters.BackupRequests); q.BusyAfterDrop > 0 {
			d.stuck = time.Now().Add(q.BusyAfterDrop)
		}
		d.counters.FailedBackups++
		d.counters.LastErrorCode = -1
		d.counters.LastErrorDescription = err.Error()
		d.mu.Unlock()
		dropPending(st.last)
		return err
	}
	d.counters.LastErrorCode = res.code
	d.counters.LastErrorDescription = res.desc
	if res.code != 0 {
		d.counters.FailedBackups++
		dropPending(st.last)
	} else {
		d.counters.Backups++
		if st.full {
			d.counters.FullBackups++
		} else {
			d.counters.IncrementalBackups++
		}
		d.counters.LastFull = st.full
		d.counters.LastFilesUploaded = st.files
		d.counters.LastBytesUploaded = st.bytes
		d.counters.LastFilesRemoved = st.removed
		d.counters.LastFileErrors = st.fileErrors
		d.counters.FileErrors += st.fileErrors
		d.counters.LastBackupUUID = st.uuid
		d.lastUUID = st.uuid
		d.commitLast(st.last)
	}
	d.counters.FilesUploaded += st.files
	d.counters.BytesUploaded += st.bytes
	d.counters.FilesRemoved += st.removed
	if res.code == 0 && d.opts.MutatePercent > 0 {
		d.mutateLocked(d.opts.MutatePercent)
	}
	saveErr := d.saveLocked()
	d.mu.Unlock()
	if err := s.reply(res.code, res.desc, ""); err != nil {
		return err
	}
	return saveErr
}

// backupStats are the numbers of one backup run.
type backupStats struct {
	full                  bool
	files, bytes, removed int64
	fileErrors            int64
	uuid                  string
	last                  *lastBackup // what the device remembers if the backup completes
}

func (d *Device) passcodeRequired() bool {
	if d.opts.PasscodeRequired != nil {
		return *d.opts.PasscodeRequired
	}
	return versionAtLeast(d.opts.Identity.ProductVersion, 16, 1)
}

func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	maj, err := strconv.Atoi(parts[0])
	if err != nil {
		return false
	}
	mnr := 0
	if len(parts) > 1 {
		mnr, _ = strconv.Atoi(parts[1])
	}
	return maj > major || maj == major && mnr >= minor
}

// passcode runs the iOS 16.1+ prompt: presented, the simulated user's delay (or the
// timeout), dismissed. It reports whether the passcode was entered.
func (s *session) passcode(ctx context.Context) (bool, error) {
	o := s.d.opts
	s.d.mu.Lock()
	s.d.counters.PasscodePrompts++
	s.d.mu.Unlock()
	s.n.Post(NotifyPasscodePresented)
	defer s.n.Post(NotifyPasscodeDismissed)
	if o.FailCode == 208 {
		return false, nil // the user refused
	}
	if s.q.CancelPasscode {
		// The user taps Cancel after a moment: the sheet goes away long before the timeout,
		// and the device takes a moment more to end the request.
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return false, err
		}
		s.n.Post(NotifyPasscodeDismissed)
		return false, sleepCtx(ctx, 300*time.Millisecond)
	}
	wait, entered := o.PasscodeDelay, true
	if wait < 0 || wait >= o.PasscodeTimeout {
		wait, entered = o.PasscodeTimeout, false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return entered, nil
	case <-ctx.Done():
		return false, linkErr(ctx.Err())
	}
}

func (d *Device) now() time.Time { return time.Now() }

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// tempDir creates a scratch directory for Manifest.db files of one backup.
func (d *Device) tempDir() (string, error) {
	dir, err := os.MkdirTemp(d.opts.TempDir, "backupsim-*")
	if err != nil {
		return "", fmt.Errorf("backupsim: scratch dir: %w", err)
	}
	return dir, nil
}

// infoContent is the "useful mode" answer to Info: a human-readable summary of the device.
func (d *Device) infoContent() string {
	vers := d.snapshotVersions()
	var files, size int64
	for i, v := range vers {
		if v == 0 {
			continue
		}
		files++
		size += d.size(i, genKind(d.opts.Seed, i), v)
	}
	c := d.Counters()
	id := d.opts.Identity
	var b strings.Builder
	fmt.Fprintf(&b, "Device Name: %s\nProduct Type: %s\nProduct Version: %s\nBuild Version: %s\nSerial Number: %s\nUnique Identifier: %s\n",
		id.DeviceName, id.ProductType, id.ProductVersion, id.BuildVersion, id.SerialNumber, id.UDID)
	fmt.Fprintf(&b, "Files: %d\nDirectories: %d\nTotal Size: %d\nIs Encrypted: %v\nBackups: %d\nLast Backup UUID: %s\n",
		files, len(d.dirs), size, d.WillEncrypt(), c.Backups, c.LastBackupUUID)
	return b.String()
}

// listContent is the "useful mode" answer to List: CSV of the device's content.
func (d *Device) listContent() (string, error) {
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write([]string{"Domain", "RelativePath", "Flags", "Size", "LastModified", "FileID"})
	for _, f := range d.Files() {
		w.Write([]string{f.Domain, f.RelativePath, strconv.FormatInt(f.Flags, 10), strconv.FormatInt(f.Size, 10),
			f.ModTime.Format(time.RFC3339), f.FileID})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return "", fmt.Errorf("list: %w", err)
	}
	return b.String(), nil
}

// blobName returns the path of a blob relative to the backup root, under the device folder
// or its Snapshot.
func blobName(udid, fileID string, snapshot bool) string {
	if snapshot {
		return udid + "/" + backupfmt.SnapshotDirName + "/" + fileID[:2] + "/" + fileID
	}
	return udid + "/" + fileID[:2] + "/" + fileID
}
