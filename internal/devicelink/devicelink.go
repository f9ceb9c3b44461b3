// Package devicelink implements Apple's DeviceLink framing used by com.apple.mobilebackup2:
// control messages (a length-prefixed plist whose root is an array naming the message) and the
// raw file streams that DownloadFiles and UploadFiles switch the same byte stream into.
//
// It is shared by the host (internal/mobilebackup2) and the simulated device
// (internal/devicesim), so both speak exactly the same bytes. It knows nothing of backups.
// A Conn is not safe for concurrent use; one goroutine owns it.
package devicelink

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"snapback/internal/plistio"
)

// Message names (element 0 of every DeviceLink array).
const (
	VersionExchange     = "DLMessageVersionExchange"
	DeviceReady         = "DLMessageDeviceReady"
	ProcessMessage      = "DLMessageProcessMessage"
	DownloadFiles       = "DLMessageDownloadFiles"
	UploadFiles         = "DLMessageUploadFiles"
	GetFreeDiskSpace    = "DLMessageGetFreeDiskSpace"
	PurgeDiskSpace      = "DLMessagePurgeDiskSpace"
	ContentsOfDirectory = "DLContentsOfDirectory" // sic: no "Message" in this one
	CreateDirectory     = "DLMessageCreateDirectory"
	MoveItems           = "DLMessageMoveItems"
	MoveFiles           = "DLMessageMoveFiles" // older name of MoveItems
	RemoveItems         = "DLMessageRemoveItems"
	RemoveFiles         = "DLMessageRemoveFiles" // older name of RemoveItems
	CopyItem            = "DLMessageCopyItem"
	Disconnect          = "DLMessageDisconnect"
	StatusResponse      = "DLMessageStatusResponse"
	VersionsOk          = "DLVersionsOk"

	// EmptyParameter stands for "no value" wherever DeviceLink expects a string.
	EmptyParameter = "___EmptyParameterString___"
)

// Block codes of the raw file stream.
const (
	CodeSuccess     byte = 0x00
	CodeErrorLocal  byte = 0x06
	CodeErrorRemote byte = 0x0B
	CodeFileData    byte = 0x0C
)

// Device error codes carried in status responses (errno mapped the libimobiledevice way).
const (
	ErrCodeNoEntry     = -6
	ErrCodeExists      = -7
	ErrCodeNotDir      = -8
	ErrCodeIsDir       = -9
	ErrCodeLoop        = -10
	ErrCodeIO          = -11
	ErrCodeNoSpace     = -15
	ErrCodeMultiStatus = -13
	ErrCodeGeneric     = -1
)

const (
	// BlockSize is the data block size both sides use: Apple's DeviceLink buffer size; larger
	// frames have pushed BackupAgent2 over its memory limit on big Manifest.db files.
	BlockSize = 32 * 1024
	// MaxNameLen bounds a path in a raw stream (idevicebackup2 uses the same limit).
	MaxNameLen = 4096
	// MaxBlockLen bounds a single block announced by the peer. Blocks are streamed, never
	// buffered whole, but a wildly large length is a desynchronised stream, not data.
	MaxBlockLen = 64 << 20
)

// ErrNotDeviceLink is returned for a frame that is not a DeviceLink array.
var ErrNotDeviceLink = errors.New("not a DeviceLink message")

// ErrStreamEnd reports the u32 zero that ends a whole raw file stream.
var ErrStreamEnd = errors.New("end of file stream")

// Conn is one DeviceLink connection over a byte stream (usually service TLS).
type Conn struct {
	r *bufio.Reader
	w *bufio.Writer
	// Format is the encoding of outgoing control messages. Devices and libimobiledevice use
	// binary; pymobiledevice3 uses XML. Both are always accepted on input.
	Format plistio.Format
	// MaxFrame bounds incoming control messages.
	MaxFrame uint32

	scratch []byte // file data copy buffer, reused for every block
	// frame holds the last control message read, reused for the next (up to maxKeptFrame):
	// neither decoder keeps a reference to it (howett.net/plist copies its input, decodeMoves
	// copies it into a string).
	frame []byte
	name  []byte // ReadName's buffer, reused for every name
}

// maxKeptFrame is the largest frame buffer a Conn keeps for the next message; a larger
// message (a MoveItems of a thousand pairs is about 180 KB) is read into a buffer of its own.
const maxKeptFrame = 1 << 20

// NewConn wraps rw. Reads and writes are buffered; every exported write method that ends a
// logical unit flushes.
func NewConn(rw io.ReadWriter) *Conn {
	return &Conn{
		r:        bufio.NewReaderSize(rw, 64<<10),
		w:        bufio.NewWriterSize(rw, 64<<10),
		Format:   plistio.Binary,
		MaxFrame: plistio.DefaultMaxFrame,
	}
}

// Message is a decoded DeviceLink control message; element 0 is its name.
type Message []any

// Name returns the message name.
func (m Message) Name() string {
	if len(m) == 0 {
		return ""
	}
	s, _ := m[0].(string)
	return s
}

// Arg returns element i, or nil when the message is shorter.
func (m Message) Arg(i int) any {
	if i < 0 || i >= len(m) {
		return nil
	}
	return m[i]
}

// ReadMessage reads one control message. Like libimobiledevice it requires an array whose
// first element is a string starting with "DL" of at least 9 characters. The argument 1 of a
// MoveItems message may come as Moves or as a map[string]any: read it with MovesOf.
func (c *Conn) ReadMessage() (Message, error) {
	b, err := plistio.ReadFrameInto(c.r, c.MaxFrame, c.frame)
	if err != nil {
		return nil, err
	}
	if cap(b) <= maxKeptFrame {
		c.frame = b[:0]
	}
	if m, ok := decodeMoves(b); ok {
		return m, nil
	}
	return DecodeMessage(b)
}

// DecodeMessage decodes one control message payload (without its length prefix).
func DecodeMessage(b []byte) (Message, error) {
	var arr []any
	if err := plistio.Unmarshal(b, &arr); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotDeviceLink, err)
	}
	if len(arr) == 0 {
		return nil, fmt.Errorf("%w: empty array", ErrNotDeviceLink)
	}
	name, ok := arr[0].(string)
	if !ok || len(name) < 9 || !strings.HasPrefix(name, "DL") {
		return nil, fmt.Errorf("%w: element 0 is %T %.40v", ErrNotDeviceLink, arr[0], arr[0])
	}
	return Message(arr), nil
}

// WriteMessage sends one control message and flushes.
func (c *Conn) WriteMessage(elems ...any) error {
	b, err := plistio.Marshal(elems, c.Format)
	if err != nil {
		return fmt.Errorf("encode %v: %w", elems[0], err)
	}
	if err := plistio.WriteFrame(c.w, b); err != nil {
		return err
	}
	return c.w.Flush()
}

// SendProcessMessage wraps dict in a DLMessageProcessMessage.
func (c *Conn) SendProcessMessage(dict map[string]any) error {
	return c.WriteMessage(ProcessMessage, dict)
}

// SendStatus answers a device request with a DLMessageStatusResponse. An empty desc becomes
// the empty-parameter string; a nil extra becomes an empty dict.
func (c *Conn) SendStatus(code int64, desc string, extra any) error {
	if desc == "" {
		desc = EmptyParameter
	}
	if extra == nil {
		extra = map[string]any{}
	}
	return c.WriteMessage(StatusResponse, code, desc, extra)
}

// --- raw file streams ---

// WriteUint32 writes a big-endian u32 (buffered).
func (c *Conn) WriteUint32(n uint32) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	_, err := c.w.Write(b[:])
	return err
}

// WriteName writes a length-prefixed name (buffered).
func (c *Conn) WriteName(s string) error {
	if err := c.WriteUint32(uint32(len(s))); err != nil {
		return err
	}
	_, err := c.w.WriteString(s)
	return err
}

// WriteBlock writes one block: u32 (len(body)+1), code, body (buffered).
func (c *Conn) WriteBlock(code byte, body []byte) error {
	if err := c.WriteUint32(uint32(len(body) + 1)); err != nil {
		return err
	}
	if err := c.w.WriteByte(code); err != nil {
		return err
	}
	_, err := c.w.Write(body)
	return err
}

// WriteFileData streams r as DATA blocks of at most BlockSize bytes, using buf (at least
// BlockSize long) as scratch. It returns the number of bytes sent.
func (c *Conn) WriteFileData(r io.Reader, buf []byte) (int64, error) {
	if len(buf) < BlockSize {
		buf = make([]byte, BlockSize)
	}
	buf = buf[:BlockSize]
	var total int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if werr := c.WriteBlock(CodeFileData, buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// WriteTerminator ends a whole raw stream (u32 0) and flushes.
func (c *Conn) WriteTerminator() error {
	if err := c.WriteUint32(0); err != nil {
		return err
	}
	return c.w.Flush()
}

// Flush sends buffered bytes.
func (c *Conn) Flush() error { return c.w.Flush() }

// ReadUint32 reads a big-endian u32.
func (c *Conn) ReadUint32() (uint32, error) {
	// Peek, not io.ReadFull into a local array: the array would escape to the heap through
	// the io.Reader interface, an allocation for every block and name of a backup.
	b, err := c.r.Peek(4)
	if err != nil {
		if len(b) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF // as io.ReadFull says of a partial read
		}
		return 0, err
	}
	v := binary.BigEndian.Uint32(b)
	_, _ = c.r.Discard(4) // Peek returned 4 bytes: they are buffered
	return v, nil
}

// ReadName reads a length-prefixed name. A zero length is the end of the stream and returns
// ErrStreamEnd. Lengths above MaxNameLen are refused before allocating.
func (c *Conn) ReadName() (string, error) {
	b, err := c.ReadNameInto(c.name[:0])
	if cap(b) > cap(c.name) {
		c.name = b[:0]
	}
	return string(b), err
}

// ReadNameInto is ReadName reading into buf's storage where it fits, for a name the
// caller may never need as a string (the device-side name of each upload, wanted only
// when the device cannot read the file).
func (c *Conn) ReadNameInto(buf []byte) ([]byte, error) {
	n, err := c.ReadUint32()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, ErrStreamEnd
	}
	if n > MaxNameLen {
		return nil, fmt.Errorf("file stream: name length %d exceeds %d (stream out of sync)", n, MaxNameLen)
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return nil, fmt.Errorf("file stream: read name: %w", noEOF(err))
	}
	return buf, nil
}

// FileResult is how one file of a raw stream ended.
type FileResult struct {
	Bytes int64  // data bytes received
	Code  byte   // CodeSuccess, CodeErrorLocal or CodeErrorRemote
	Err   string // error text sent by the peer for an error code
}

// ReadFileBody consumes the blocks of one file, copying DATA into w (which may be
// io.Discard), until a SUCCESS or error block. It never buffers more than one bounded error
// text. If a zero length appears where a block was expected, ErrStreamEnd is returned with
// the bytes so far: libimobiledevice treats that as the end of the whole upload.
// An error writing to w does not stop the stream: the remaining blocks are drained so the
// connection stays in sync, and the write error is returned after the file ends. A w that
// is a BlockReader reads the DATA itself and keeps its own write errors.
func (c *Conn) ReadFileBody(w io.Writer) (FileResult, error) {
	var res FileResult
	var werr error
	for {
		n, err := c.ReadUint32()
		if err != nil {
			return res, fmt.Errorf("file stream: read block length: %w", noEOF(err))
		}
		if n == 0 {
			return res, ErrStreamEnd
		}
		if n > MaxBlockLen {
			return res, fmt.Errorf("file stream: block length %d exceeds %d (stream out of sync)", n, MaxBlockLen)
		}
		code, err := c.r.ReadByte()
		if err != nil {
			return res, fmt.Errorf("file stream: read block code: %w", noEOF(err))
		}
		body := int64(n - 1)
		switch code {
		case CodeFileData:
			if bw, ok := w.(BlockReader); ok {
				m, err := bw.ReadBlock(c.r, body)
				res.Bytes += m
				if err != nil {
					return res, fmt.Errorf("file stream: read data: %w", noEOF(err))
				}
				continue
			}
			// The tracking writer never fails the copy: after the destination's first error it
			// discards, so exactly this block is consumed and the stream stays in sync.
			tw := trackingWriter{w: w, err: werr}
			// A reused scratch buffer: io.CopyN would allocate 32 KiB per block, which for a
			// multi-GB backup is gigabytes of garbage and hundreds of GC cycles.
			if c.scratch == nil {
				c.scratch = make([]byte, BlockSize)
			}
			m, err := io.CopyBuffer(&tw, io.LimitReader(c.r, body), c.scratch)
			res.Bytes += m
			werr = tw.err
			if err != nil {
				return res, fmt.Errorf("file stream: read data: %w", noEOF(err))
			}
		case CodeSuccess:
			if body > 0 {
				if _, err := io.CopyN(io.Discard, c.r, body); err != nil {
					return res, fmt.Errorf("file stream: read trailer: %w", noEOF(err))
				}
			}
			res.Code = CodeSuccess
			return res, werr
		case CodeErrorLocal, CodeErrorRemote:
			const maxErrText = 4096
			keep := min(body, maxErrText)
			b := make([]byte, keep)
			if _, err := io.ReadFull(c.r, b); err != nil {
				return res, fmt.Errorf("file stream: read error text: %w", noEOF(err))
			}
			if body > keep {
				if _, err := io.CopyN(io.Discard, c.r, body-keep); err != nil {
					return res, fmt.Errorf("file stream: read error text: %w", noEOF(err))
				}
			}
			res.Code = code
			res.Err = string(b)
			return res, werr
		default:
			return res, fmt.Errorf("file stream: unknown block code 0x%02x (stream out of sync)", code)
		}
	}
}

// BlockReader is a ReadFileBody destination that takes each DATA block from the connection
// itself, into its own buffer: no intermediate copy, and it can gather many blocks into one
// large write. ReadBlock must consume exactly n bytes of r (discarding them after a failure
// of its own, which it keeps to itself, so the stream stays in sync) and return only r's
// error.
type BlockReader interface {
	ReadBlock(r io.Reader, n int64) (int64, error)
}

// trackingWriter remembers the destination's own error and then discards. It always reports
// success to io.CopyN: if it returned the error, io.CopyN would stop with an unknown number of
// bytes already read from the connection but not written, and the stream would desynchronise.
type trackingWriter struct {
	w   io.Writer
	err error
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	if t.err != nil {
		return len(p), nil
	}
	if _, err := t.w.Write(p); err != nil {
		t.err = err
	}
	return len(p), nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
