package devicesim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AFC wire format (protocol.md §6): 40-byte little-endian header, header payload, data.
const (
	afcMagic      = "CFA6LPAA"
	afcHeaderSize = 40
	// afcMaxHeaderPayload bounds paths and parameters; afcMaxData bounds a write.
	afcMaxHeaderPayload = 64 << 10
	afcMaxData          = 8 << 20
	// afcMaxRead caps the size a FILE_READ may ask for.
	afcMaxRead = 1 << 20
	// afcMaxFSBytes caps the in-memory filesystem of one device.
	afcMaxFSBytes = 64 << 20
)

// AFC operations.
const (
	afcOpStatus      = 0x01
	afcOpData        = 0x02
	afcOpReadDir     = 0x03
	afcOpRemovePath  = 0x08
	afcOpMakeDir     = 0x09
	afcOpGetFileInfo = 0x0A
	afcOpGetDevInfo  = 0x0B
	afcOpFileOpen    = 0x0D
	afcOpFileOpenRes = 0x0E
	afcOpFileRead    = 0x0F
	afcOpFileWrite   = 0x10
	afcOpFileClose   = 0x14
	afcOpFileLock    = 0x1B
	afcOpRemoveAll   = 0x22
)

// AFC status codes (libimobiledevice afc.h).
const (
	afcSuccess        = 0
	afcUnknownError   = 1
	afcInvalidArg     = 7
	afcObjectNotFound = 8
	afcObjectIsDir    = 9
	afcOpNotSupported = 15
	afcObjectExists   = 16
	afcNoSpaceLeft    = 18
	afcOpWouldBlock   = 19
	afcDirNotEmpty    = 33
)

// Lock operations of FILE_LOCK (flock(2) values).
const (
	afcLockSH = 1
	afcLockEX = 2
	afcLockNB = 4
	afcLockUN = 8
)

type afcHeader struct {
	EntireLen, ThisLen, PacketNum, Op uint64
}

var errAFCHeader = errors.New("afc: bad header")

// parseAFCHeader decodes and validates a 40-byte header, bounding both lengths.
func parseAFCHeader(b []byte) (afcHeader, error) {
	if len(b) < afcHeaderSize {
		return afcHeader{}, fmt.Errorf("%w: %d bytes", errAFCHeader, len(b))
	}
	if string(b[:8]) != afcMagic {
		return afcHeader{}, fmt.Errorf("%w: magic %q", errAFCHeader, b[:8])
	}
	h := afcHeader{
		EntireLen: binary.LittleEndian.Uint64(b[8:]),
		ThisLen:   binary.LittleEndian.Uint64(b[16:]),
		PacketNum: binary.LittleEndian.Uint64(b[24:]),
		Op:        binary.LittleEndian.Uint64(b[32:]),
	}
	if h.ThisLen < afcHeaderSize || h.EntireLen < h.ThisLen {
		return h, fmt.Errorf("%w: lengths %d/%d", errAFCHeader, h.EntireLen, h.ThisLen)
	}
	if h.ThisLen-afcHeaderSize > afcMaxHeaderPayload || h.EntireLen-h.ThisLen > afcMaxData {
		return h, fmt.Errorf("%w: packet too large (%d/%d)", errAFCHeader, h.EntireLen, h.ThisLen)
	}
	return h, nil
}

func encodeAFC(num, op uint64, hdrPayload, data []byte) []byte {
	this := uint64(afcHeaderSize + len(hdrPayload))
	b := make([]byte, 0, int(this)+len(data))
	b = append(b, afcMagic...)
	b = binary.LittleEndian.AppendUint64(b, this+uint64(len(data)))
	b = binary.LittleEndian.AppendUint64(b, this)
	b = binary.LittleEndian.AppendUint64(b, num)
	b = binary.LittleEndian.AppendUint64(b, op)
	b = append(b, hdrPayload...)
	return append(b, data...)
}

// afcFS is a small in-memory filesystem with flock-style locks shared by every AFC
// connection of one device.
type afcFS struct {
	mu    sync.Mutex
	files map[string][]byte
	dirs  map[string]bool
	size  int64
	locks map[string]*afcLock
	next  uint64 // next handle, device-wide so handles never repeat
	model string // ProductType, reported by GET_DEVINFO
}

// afcLock is the lock state of one path; owners are open handles (flock locks belong to
// the open file description, not the process).
type afcLock struct {
	excl   *afcHandle
	shared map[*afcHandle]struct{}
}

type afcHandle struct {
	id     uint64
	path   string
	read   bool
	write  bool
	append bool
	pos    int64
}

func newAFCFS(model string) *afcFS {
	fs := &afcFS{files: map[string][]byte{}, dirs: map[string]bool{"/": true}, locks: map[string]*afcLock{}, next: 1, model: model}
	for _, d := range []string{"/Books", "/DCIM", "/Downloads", "/iTunes_Control", "/iTunes_Control/iTunes", "/Photos", "/PublicStaging"} {
		fs.dirs[d] = true
	}
	return fs
}

func cleanAFCPath(p string) string {
	p = strings.TrimRight(p, "\x00")
	return path.Clean("/" + p)
}

// cString returns the NUL-terminated (or unterminated) string at the start of b.
func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

func (fs *afcFS) readFile(p string) ([]byte, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	b, ok := fs.files[cleanAFCPath(p)]
	return append([]byte(nil), b...), ok
}

func (fs *afcFS) writeFile(p string, data []byte) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p = cleanAFCPath(p)
	for dir := path.Dir(p); !fs.dirs[dir]; dir = path.Dir(dir) {
		fs.dirs[dir] = true
	}
	fs.size += int64(len(data)) - int64(len(fs.files[p]))
	fs.files[p] = append([]byte(nil), data...)
}

func (fs *afcFS) locked(p string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	l := fs.locks[cleanAFCPath(p)]
	return l != nil && (l.excl != nil || len(l.shared) > 0)
}

// afcSession is one AFC connection: its open handles.
type afcSession struct {
	fs      *afcFS
	handles map[uint64]*afcHandle
}

// serve runs one AFC connection until EOF. All its locks are released when it ends, as a
// real device does when the host disconnects.
func (fs *afcFS) serve(ctx context.Context, rw io.ReadWriter) error {
	s := &afcSession{fs: fs, handles: map[uint64]*afcHandle{}}
	defer s.closeAll()
	hb := make([]byte, afcHeaderSize)
	for ctx.Err() == nil {
		if _, err := io.ReadFull(rw, hb); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("afc: read header: %w", err)
		}
		h, err := parseAFCHeader(hb)
		if err != nil {
			return err
		}
		hp := make([]byte, h.ThisLen-afcHeaderSize)
		data := make([]byte, h.EntireLen-h.ThisLen)
		if _, err := io.ReadFull(rw, hp); err != nil {
			return fmt.Errorf("afc: read header payload: %w", err)
		}
		if _, err := io.ReadFull(rw, data); err != nil {
			return fmt.Errorf("afc: read data: %w", err)
		}
		op, rhp, rdata := s.handle(ctx, h.Op, hp, data)
		if _, err := rw.Write(encodeAFC(h.PacketNum, op, rhp, rdata)); err != nil {
			return fmt.Errorf("afc: write reply: %w", err)
		}
	}
	return ctx.Err()
}

func afcStatus(code uint64) (uint64, []byte, []byte) {
	// Always the 8-byte code: libimobiledevice treats an empty status as IO_ERROR and
	// go-ios reads the 8 bytes unguarded.
	return afcOpStatus, binary.LittleEndian.AppendUint64(nil, code), nil
}

// fileHandle is the open file that the header payload hp names in its first 8 bytes, or nil
// when hp is shorter than the n bytes its operation needs or names no open file.
func (s *afcSession) fileHandle(hp []byte, n int) *afcHandle {
	if len(hp) < n {
		return nil
	}
	return s.handles[binary.LittleEndian.Uint64(hp)]
}

func (s *afcSession) handle(ctx context.Context, op uint64, hp, data []byte) (uint64, []byte, []byte) {
	fs := s.fs
	switch op {
	case afcOpFileOpen:
		if len(hp) < 9 {
			return afcStatus(afcInvalidArg)
		}
		return s.open(binary.LittleEndian.Uint64(hp), cleanAFCPath(cString(hp[8:])))
	case afcOpFileClose:
		h := s.fileHandle(hp, 8)
		if h == nil {
			return afcStatus(afcInvalidArg)
		}
		s.close(h)
		return afcStatus(afcSuccess)
	case afcOpFileLock:
		h := s.fileHandle(hp, 16)
		if h == nil {
			return afcStatus(afcInvalidArg)
		}
		return afcStatus(s.lock(ctx, h, binary.LittleEndian.Uint64(hp[8:])))
	case afcOpFileRead:
		h := s.fileHandle(hp, 16)
		if h == nil || !h.read {
			return afcStatus(afcInvalidArg)
		}
		n := min(binary.LittleEndian.Uint64(hp[8:]), afcMaxRead)
		fs.mu.Lock()
		content := fs.files[h.path]
		var out []byte
		if h.pos < int64(len(content)) {
			end := min(h.pos+int64(n), int64(len(content)))
			out = append([]byte(nil), content[h.pos:end]...)
			h.pos = end
		}
		fs.mu.Unlock()
		return afcOpData, nil, out
	case afcOpFileWrite:
		h := s.fileHandle(hp, 8)
		if h == nil || !h.write {
			return afcStatus(afcInvalidArg)
		}
		fs.mu.Lock()
		defer fs.mu.Unlock()
		content, ok := fs.files[h.path]
		if !ok {
			return afcStatus(afcObjectNotFound)
		}
		if h.append {
			h.pos = int64(len(content))
		}
		end := h.pos + int64(len(data))
		grow := max(end-int64(len(content)), 0)
		if fs.size+grow > afcMaxFSBytes {
			return afcStatus(afcNoSpaceLeft)
		}
		if end > int64(len(content)) {
			content = append(content, make([]byte, end-int64(len(content)))...)
		}
		copy(content[h.pos:], data)
		fs.files[h.path] = content
		fs.size += grow
		h.pos = end
		return afcStatus(afcSuccess)
	case afcOpGetFileInfo:
		p := cleanAFCPath(cString(hp))
		fs.mu.Lock()
		defer fs.mu.Unlock()
		var size int64
		var ifmt string
		switch {
		case fs.dirs[p]:
			ifmt = "S_IFDIR"
		case fs.hasFile(p):
			ifmt, size = "S_IFREG", int64(len(fs.files[p]))
		default:
			return afcStatus(afcObjectNotFound)
		}
		now := strconv.FormatInt(time.Now().UnixNano(), 10)
		kv := []string{"st_size", strconv.FormatInt(size, 10), "st_blocks", strconv.FormatInt((size+511)/512, 10),
			"st_nlink", "1", "st_ifmt", ifmt, "st_mtime", now, "st_birthtime", now}
		return afcOpData, nil, []byte(strings.Join(kv, "\x00") + "\x00")
	case afcOpReadDir:
		p := cleanAFCPath(cString(hp))
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if !fs.dirs[p] {
			if fs.hasFile(p) {
				return afcStatus(afcInvalidArg)
			}
			return afcStatus(afcObjectNotFound)
		}
		names := []string{".", ".."}
		for _, m := range []map[string]bool{fs.dirs, fs.fileSet()} {
			for q := range m {
				if q != "/" && path.Dir(q) == p {
					names = append(names, path.Base(q))
				}
			}
		}
		sort.Strings(names[2:])
		return afcOpData, nil, []byte(strings.Join(names, "\x00") + "\x00")
	case afcOpMakeDir:
		p := cleanAFCPath(cString(hp))
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if fs.hasFile(p) {
			return afcStatus(afcObjectExists)
		}
		// AFC's MAKE_DIR creates missing parents, like mkdir -p.
		for q := p; !fs.dirs[q]; q = path.Dir(q) {
			if fs.hasFile(q) {
				return afcStatus(afcObjectExists)
			}
			fs.dirs[q] = true
		}
		return afcStatus(afcSuccess)
	case afcOpRemovePath, afcOpRemoveAll:
		p := cleanAFCPath(cString(hp))
		if p == "/" {
			return afcStatus(afcInvalidArg)
		}
		fs.mu.Lock()
		defer fs.mu.Unlock()
		switch {
		case fs.hasFile(p):
			fs.size -= int64(len(fs.files[p]))
			delete(fs.files, p)
		case fs.dirs[p]:
			var inside []string
			for _, m := range []map[string]bool{fs.dirs, fs.fileSet()} {
				for q := range m {
					if strings.HasPrefix(q, p+"/") {
						inside = append(inside, q)
					}
				}
			}
			if len(inside) > 0 && op == afcOpRemovePath {
				return afcStatus(afcDirNotEmpty)
			}
			for _, q := range inside {
				fs.size -= int64(len(fs.files[q]))
				delete(fs.files, q)
				delete(fs.dirs, q)
			}
			delete(fs.dirs, p)
		default:
			return afcStatus(afcObjectNotFound)
		}
		return afcStatus(afcSuccess)
	case afcOpGetDevInfo:
		kv := []string{"Model", fs.model, "FSTotalBytes", "127989493760", "FSFreeBytes", "64000000000", "FSBlockSize", "4096"}
		return afcOpData, nil, []byte(strings.Join(kv, "\x00") + "\x00")
	default:
		return afcStatus(afcOpNotSupported)
	}
}

func (fs *afcFS) hasFile(p string) bool { _, ok := fs.files[p]; return ok }

func (fs *afcFS) fileSet() map[string]bool {
	m := make(map[string]bool, len(fs.files))
	for p := range fs.files {
		m[p] = true
	}
	return m
}

// open implements FILE_OPEN modes 1 r, 2 r+ (creates), 3 w, 4 w+, 5 a, 6 a+.
func (s *afcSession) open(mode uint64, p string) (uint64, []byte, []byte) {
	fs := s.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.dirs[p] {
		return afcStatus(afcObjectIsDir)
	}
	if !fs.dirs[path.Dir(p)] {
		return afcStatus(afcObjectNotFound)
	}
	h := &afcHandle{path: p}
	create, trunc := false, false
	switch mode {
	case 1:
		h.read = true
	case 2:
		h.read, h.write, create = true, true, true
	case 3:
		h.write, create, trunc = true, true, true
	case 4:
		h.read, h.write, create, trunc = true, true, true, true
	case 5:
		h.write, h.append, create = true, true, true
	case 6:
		h.read, h.write, h.append, create = true, true, true, true
	default:
		return afcStatus(afcInvalidArg)
	}
	_, exists := fs.files[p]
	switch {
	case !exists && !create:
		return afcStatus(afcObjectNotFound)
	case !exists || trunc:
		fs.size -= int64(len(fs.files[p]))
		fs.files[p] = []byte{}
	}
	h.id = fs.next
	fs.next++
	s.handles[h.id] = h
	return afcOpFileOpenRes, binary.LittleEndian.AppendUint64(nil, h.id), nil
}

func (s *afcSession) close(h *afcHandle) {
	s.fs.mu.Lock()
	s.fs.unlockLocked(h)
	s.fs.mu.Unlock()
	delete(s.handles, h.id)
}

func (s *afcSession) closeAll() {
	for _, h := range s.handles {
		s.close(h)
	}
}

func (fs *afcFS) unlockLocked(h *afcHandle) {
	l := fs.locks[h.path]
	if l == nil {
		return
	}
	if l.excl == h {
		l.excl = nil
	}
	delete(l.shared, h)
	if l.excl == nil && len(l.shared) == 0 {
		delete(fs.locks, h.path)
	}
}

// tryLockLocked applies SH/EX for h if no other handle conflicts (conversion by the same
// handle is allowed, as with flock).
func (fs *afcFS) tryLockLocked(h *afcHandle, exclusive bool) bool {
	l := fs.locks[h.path]
	if l == nil {
		l = &afcLock{shared: map[*afcHandle]struct{}{}}
		fs.locks[h.path] = l
	}
	if l.excl != nil && l.excl != h {
		return false
	}
	if exclusive {
		for o := range l.shared {
			if o != h {
				return false
			}
		}
		delete(l.shared, h)
		l.excl = h
		return true
	}
	l.excl = nil
	l.shared[h] = struct{}{}
	return true
}

// lock implements FILE_LOCK. A blocking request waits (polling) until the lock is free or
// the connection's context ends.
func (s *afcSession) lock(ctx context.Context, h *afcHandle, op uint64) uint64 {
	kind := op &^ afcLockNB
	if kind == afcLockUN {
		s.fs.mu.Lock()
		s.fs.unlockLocked(h)
		s.fs.mu.Unlock()
		return afcSuccess
	}
	if kind != afcLockSH && kind != afcLockEX {
		return afcInvalidArg
	}
	for {
		s.fs.mu.Lock()
		ok := s.fs.tryLockLocked(h, kind == afcLockEX)
		if !ok {
			if l := s.fs.locks[h.path]; l != nil && l.excl == nil && len(l.shared) == 0 {
				delete(s.fs.locks, h.path)
			}
		}
		s.fs.mu.Unlock()
		if ok {
			return afcSuccess
		}
		if op&afcLockNB != 0 {
			return afcOpWouldBlock
		}
		select {
		case <-ctx.Done():
			return afcUnknownError
		case <-time.After(50 * time.Millisecond):
		}
	}
}
