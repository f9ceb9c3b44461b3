// Package plistio reads and writes the length-prefixed plist frames that lockdownd,
// notification_proxy and DeviceLink share (4-byte big-endian length + XML or binary plist),
// and normalises the loosely typed values that different peers put in them.
//
// Every length read from the wire is bounded before anything is allocated: the peer is a
// device (or something pretending to be one) and is not trusted.
package plistio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"howett.net/plist"
)

// DefaultMaxFrame bounds a single plist frame. Real frames are a few KiB; Info.plist with app
// icons can reach a few MiB. Anything larger is a protocol error, not data.
const DefaultMaxFrame = 32 << 20

// ErrFrameTooLarge is returned when a peer announces a frame larger than the allowed maximum.
var ErrFrameTooLarge = errors.New("plist frame too large")

// ReadFrame reads one big-endian length-prefixed frame of at most max bytes.
func ReadFrame(r io.Reader, max uint32) ([]byte, error) { return ReadFrameInto(r, max, nil) }

// ReadFrameInto is ReadFrame reading into buf when the frame fits its capacity, so a caller
// that is done with each frame before the next can reuse one buffer.
func ReadFrameInto(r io.Reader, max uint32, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, max)
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read %d-byte frame: %w", n, unexpected(err))
	}
	return buf, nil
}

// WriteFrame writes payload with its big-endian length prefix in one Write call, so that a
// frame is never split across TLS records by the framing itself.
func WriteFrame(w io.Writer, payload []byte) error {
	buf := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[4:], payload)
	_, err := w.Write(buf)
	return err
}

// Format selects the plist encoding for outgoing frames.
type Format int

const (
	XML    Format = plist.XMLFormat
	Binary Format = plist.BinaryFormat
)

// Marshal encodes v in the given format.
func Marshal(v any, f Format) ([]byte, error) {
	return plist.Marshal(v, int(f))
}

// WritePlist encodes v and writes it as one frame.
func WritePlist(w io.Writer, v any, f Format) error {
	b, err := Marshal(v, f)
	if err != nil {
		return fmt.Errorf("encode plist: %w", err)
	}
	return WriteFrame(w, b)
}

// ReadPlist reads one frame and decodes it into v (XML or binary, detected).
func ReadPlist(r io.Reader, max uint32, v any) error {
	b, err := ReadFrame(r, max)
	if err != nil {
		return err
	}
	return Unmarshal(b, v)
}

// Unmarshal decodes an XML or binary plist. Unlike howett.net/plist it rejects an empty
// payload, which the library silently decodes into a zero value.
func Unmarshal(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("decode plist: empty payload")
	}
	if _, err := plist.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode plist: %w", err)
	}
	return nil
}

// Int returns v as an int64 whatever integer type the peer used. libplist writes negative
// status codes as 8-byte signed integers (decoded as int64), pymobiledevice3 as uint64 two's
// complement (decoded as uint64); both mean the same number.
func Int(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case uint64:
		return int64(n), true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case uint32:
		return int64(n), true
	case int16:
		return int64(n), true
	case uint16:
		return int64(n), true
	case int8:
		return int64(n), true
	case uint8:
		return int64(n), true
	case float64:
		if n == float64(int64(n)) {
			return int64(n), true
		}
	}
	return 0, false
}

// Float returns v as a float64 for reals and integers alike (progress values are reals,
// but some peers send integers).
func Float(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	}
	if i, ok := Int(v); ok {
		return float64(i), true
	}
	return 0, false
}

// String returns v as a string if it is one.
func String(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
