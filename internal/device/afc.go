package device

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
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

	afcModeRW = 2 // r+, create

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
	defer bind(ctx, a.conn)()
	a.num++
	pkt := make([]byte, afcHeaderSize+len(header))
	copy(pkt, afcMagic)
	binary.LittleEndian.PutUint64(pkt[8:], uint64(len(pkt)))
	binary.LittleEndian.PutUint64(pkt[16:], uint64(len(pkt)))
	binary.LittleEndian.PutUint64(pkt[24:], a.num)
	binary.LittleEndian.PutUint64(pkt[32:], op)
	copy(pkt[afcHeaderSize:], header)
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
	h := append(u64(afcModeRW), append([]byte(path), 0)...)
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
	return func(ctx context.Context) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
