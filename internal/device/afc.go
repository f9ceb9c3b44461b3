package device

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"snapback/internal/wait"
	"time"
)

// The few AFC operations the sync lock needs (go-ios has no FileRefLock).
const (
	afcMagic       = "CFA6LPAA"
	afcHeaderSize  = 40
	afcOpStatus    = 0x01
	afcOpData      = 0x02
	afcOpFileOpen  = 0x0D
	afcOpOpenRes   = 0x0E
	afcOpFileClose = 0x14
	afcOpFileLock  = 0x1B

	afcOpFileRead   = 0x0F
	afcOpFileWrite  = 0x10
	afcOpRemovePath = 0x08
	afcOpMakeDir    = 0x09

	afcModeRO = 1 // r
	afcModeRW = 2 // r+, create
	afcModeWR = 3 // w: create, truncate

	afcErrNotFound = 8

	// afcChunk is how much one FILE_READ asks for and one FILE_WRITE carries: well under
	// maxAFCPacket and what libimobiledevice uses for writes.
	afcChunk = 64 << 10

	afcLockEx = 2 | 4 // exclusive, non-blocking
	afcLockUn = 8 | 4

	afcErrWouldBlock = 19

	// maxAFCPacket caps a reply; lock replies are 48 bytes.
	maxAFCPacket = 1 << 20
)

// LockFile is the file every sync host locks so that two hosts never sync at once.
const LockFile = "/com.apple.itunes.lock_sync"

// AFC is a minimal AFC client: open, lock, close.
type AFC struct {
	conn net.Conn
	num  uint64
}

// StartAFC starts com.apple.afc on the session.
func (s *Session) StartAFC(ctx context.Context) (*AFC, error) {
	c, err := s.StartService(ctx, ServiceAFC, false)
	if err != nil {
		return nil, err
	}
	return NewAFC(c), nil
}

// NewAFC wraps an established AFC connection.
func NewAFC(c net.Conn) *AFC { return &AFC{conn: c} }

// AFCError is a non-zero AFC status.
type AFCError struct {
	Op   string
	Code uint64
}

func (e *AFCError) Error() string { return fmt.Sprintf("afc %s: status %d", e.Op, e.Code) }

func (a *AFC) roundTrip(ctx context.Context, op uint64, header []byte) (uint64, []byte, error) {
	return a.roundTripData(ctx, op, header, nil)
}

// roundTripData sends one packet whose payload is header followed by data (this_len covers
// the header only, as FILE_WRITE needs) and reads the reply.
func (a *AFC) roundTripData(ctx context.Context, op uint64, header, data []byte) (uint64, []byte, error) {
	defer bind(ctx, a.conn)()
	a.num++
	pkt := make([]byte, afcHeaderSize+len(header), afcHeaderSize+len(header)+len(data))
	copy(pkt, afcMagic)
	binary.LittleEndian.PutUint64(pkt[8:], uint64(len(pkt)+len(data)))
	binary.LittleEndian.PutUint64(pkt[16:], uint64(len(pkt)))
	binary.LittleEndian.PutUint64(pkt[24:], a.num)
	binary.LittleEndian.PutUint64(pkt[32:], op)
	copy(pkt[afcHeaderSize:], header)
	pkt = append(pkt, data...)
	if _, err := a.conn.Write(pkt); err != nil {
		return 0, nil, ctxErr(ctx, err)
	}
	var h [afcHeaderSize]byte
	if _, err := io.ReadFull(a.conn, h[:]); err != nil {
		return 0, nil, ctxErr(ctx, err)
	}
	if string(h[:8]) != afcMagic {
		return 0, nil, errors.New("afc: bad reply magic")
	}
	entire := binary.LittleEndian.Uint64(h[8:])
	if entire < afcHeaderSize || entire > maxAFCPacket {
		return 0, nil, fmt.Errorf("afc: reply length %d", entire)
	}
	body := make([]byte, entire-afcHeaderSize)
	if _, err := io.ReadFull(a.conn, body); err != nil {
		return 0, nil, ctxErr(ctx, err)
	}
	return binary.LittleEndian.Uint64(h[32:]), body, nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	return b
}

// status interprets a reply that should be a STATUS packet.
func status(name string, op uint64, body []byte) error {
	if op != afcOpStatus || len(body) < 8 {
		return fmt.Errorf("afc %s: unexpected reply op %d", name, op)
	}
	if code := binary.LittleEndian.Uint64(body); code != 0 {
		return &AFCError{Op: name, Code: code}
	}
	return nil
}

// Open opens path read-write (creating it) and returns the handle.
func (a *AFC) Open(ctx context.Context, path string) (uint64, error) {
	return a.open(ctx, path, afcModeRW)
}

func (a *AFC) open(ctx context.Context, path string, mode uint64) (uint64, error) {
	h := append(u64(mode), append([]byte(path), 0)...)
	op, body, err := a.roundTrip(ctx, afcOpFileOpen, h)
	if err != nil {
		return 0, err
	}
	if op != afcOpOpenRes {
		if err := status("open "+path, op, body); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("afc open %s: no handle", path)
	}
	if len(body) < 8 {
		return 0, fmt.Errorf("afc open %s: short reply", path)
	}
	return binary.LittleEndian.Uint64(body), nil
}

// lock sends FileRefLock.
func (a *AFC) lock(ctx context.Context, handle, mode uint64) error {
	op, body, err := a.roundTrip(ctx, afcOpFileLock, append(u64(handle), u64(mode)...))
	if err != nil {
		return err
	}
	return status("lock", op, body)
}

// CloseFile closes a handle.
func (a *AFC) CloseFile(ctx context.Context, handle uint64) error {
	op, body, err := a.roundTrip(ctx, afcOpFileClose, u64(handle))
	if err != nil {
		return err
	}
	return status("close", op, body)
}

// Close closes the connection.
func (a *AFC) Close() error { return a.conn.Close() }

// SyncLock is the held sync lock.
type SyncLock struct {
	afc    *AFC
	handle uint64
}

// LockSync takes the exclusive sync lock the way iTunes does: open the lock file, ask the
// current holder to let go (the caller posts syncLockRequest through beforeRetry on the first
// attempt), then try a non-blocking exclusive lock up to attempts times, sleeping via wait
// between tries. A lock still held at the end is ErrLockBusy.
func (a *AFC) LockSync(ctx context.Context, attempts int, wait func(context.Context) error, beforeFirst func() error) (*SyncLock, error) {
	h, err := a.Open(ctx, LockFile)
	if err != nil {
		return nil, err
	}
	if beforeFirst != nil {
		if err := beforeFirst(); err != nil {
			a.CloseFile(ctx, h)
			return nil, err
		}
	}
	for i := 0; ; i++ {
		err := a.lock(ctx, h, afcLockEx)
		if err == nil {
			return &SyncLock{afc: a, handle: h}, nil
		}
		var ae *AFCError
		if !errors.As(err, &ae) || ae.Code != afcErrWouldBlock {
			a.CloseFile(ctx, h)
			return nil, err
		}
		if i+1 >= attempts {
			a.CloseFile(ctx, h)
			return nil, fmt.Errorf("%w (%d attempts)", ErrLockBusy, attempts)
		}
		if err := wait(ctx); err != nil {
			a.CloseFile(ctx, h)
			return nil, err
		}
	}
}

// Unlock releases the lock and closes the lock file.
func (l *SyncLock) Unlock(ctx context.Context) error {
	err := l.afc.lock(ctx, l.handle, afcLockUn)
	if cerr := l.afc.CloseFile(ctx, l.handle); err == nil {
		err = cerr
	}
	return err
}

// SleepWait returns a wait function for LockSync that waits d (or until ctx ends).
func SleepWait(d time.Duration) func(context.Context) error {
	return func(ctx context.Context) error { return wait.Sleep(ctx, d) }
}

// IsNotFound reports whether err is AFC's "object not found".
func IsNotFound(err error) bool {
	var ae *AFCError
	return errors.As(err, &ae) && ae.Code == afcErrNotFound
}

// ErrTooLarge is returned by ReadFile for a file longer than the caller's limit.
var ErrTooLarge = errors.New("afc: file larger than allowed")

// ReadFile reads path whole. A file longer than max bytes fails with ErrTooLarge, so a
// device cannot make the host buffer more than the caller allows.
func (a *AFC) ReadFile(ctx context.Context, path string, max int) ([]byte, error) {
	h, err := a.open(ctx, path, afcModeRO)
	if err != nil {
		return nil, err
	}
	defer a.CloseFile(ctx, h)
	var out []byte
	for {
		want := min(afcChunk, max-len(out)+1) // one byte more than allowed detects overflow
		op, body, err := a.roundTrip(ctx, afcOpFileRead, append(u64(h), u64(uint64(want))...))
		if err != nil {
			return nil, err
		}
		if op != afcOpData {
			if err := status("read "+path, op, body); err != nil {
				return nil, err
			}
			return out, nil
		}
		if len(body) > want {
			return nil, fmt.Errorf("afc read %s: %d bytes for a request of %d", path, len(body), want)
		}
		if len(body) == 0 {
			return out, nil
		}
		out = append(out, body...)
		if len(out) > max {
			return nil, fmt.Errorf("%w: %s exceeds %d bytes", ErrTooLarge, path, max)
		}
	}
}

// WriteFile creates or truncates path and writes data to it.
func (a *AFC) WriteFile(ctx context.Context, path string, data []byte) error {
	h, err := a.open(ctx, path, afcModeWR)
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), afcChunk)
		op, body, err := a.roundTripData(ctx, afcOpFileWrite, u64(h), data[:n])
		if err == nil {
			err = status("write "+path, op, body)
		}
		if err != nil {
			a.CloseFile(ctx, h)
			return err
		}
		data = data[n:]
	}
	return a.CloseFile(ctx, h)
}

// MkDir creates path and any missing parents (AFC's MAKE_DIR behaves like mkdir -p).
func (a *AFC) MkDir(ctx context.Context, path string) error {
	op, body, err := a.roundTrip(ctx, afcOpMakeDir, append([]byte(path), 0))
	if err != nil {
		return err
	}
	return status("mkdir "+path, op, body)
}

// Remove deletes a file or an empty directory.
func (a *AFC) Remove(ctx context.Context, path string) error {
	op, body, err := a.roundTrip(ctx, afcOpRemovePath, append([]byte(path), 0))
	if err != nil {
		return err
	}
	return status("remove "+path, op, body)
}
