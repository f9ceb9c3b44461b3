package devicesim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"snapback/internal/plistio"
)

// usbmuxd wire format (protocol.md §2.2): a 16-byte little-endian header
// {length incl. header, version, message, tag} followed by the payload.
const (
	muxHeaderSize = 16
	// muxMaxPayload bounds a control message. The largest real one is SavePairRecord with
	// a ~10 KiB pair record; anything near this limit is garbage or hostile.
	muxMaxPayload = 1 << 20

	muxVersionBinary = 0
	muxVersionPlist  = 1

	muxMsgResult = 1
	muxMsgPlist  = 8
)

// usbmuxd Result numbers (protocol.md §2.4). Pair-record commands reuse errno values.
const (
	muxOK          = 0
	muxBadCommand  = 1
	muxBadDevice   = 2
	muxConnRefused = 3
	muxBadVersion  = 6
	muxENOENT      = 2
	muxEINVAL      = 22
)

var errMuxHeader = errors.New("usbmuxd: bad header")

// muxHeader is the fixed 16-byte usbmuxd packet header.
type muxHeader struct {
	Length  uint32
	Version uint32
	Message uint32
	Tag     uint32
}

// parseMuxHeader decodes and validates a header. The announced length must cover the
// header itself and stay under muxMaxPayload so that callers can allocate safely.
func parseMuxHeader(b []byte) (muxHeader, error) {
	if len(b) < muxHeaderSize {
		return muxHeader{}, fmt.Errorf("%w: %d bytes, need %d", errMuxHeader, len(b), muxHeaderSize)
	}
	h := muxHeader{
		Length:  binary.LittleEndian.Uint32(b[0:]),
		Version: binary.LittleEndian.Uint32(b[4:]),
		Message: binary.LittleEndian.Uint32(b[8:]),
		Tag:     binary.LittleEndian.Uint32(b[12:]),
	}
	if h.Length < muxHeaderSize {
		return h, fmt.Errorf("%w: length %d shorter than the header", errMuxHeader, h.Length)
	}
	if h.Length-muxHeaderSize > muxMaxPayload {
		return h, fmt.Errorf("%w: payload of %d bytes exceeds %d", errMuxHeader, h.Length-muxHeaderSize, muxMaxPayload)
	}
	return h, nil
}

func (h muxHeader) encode() []byte {
	b := make([]byte, muxHeaderSize)
	binary.LittleEndian.PutUint32(b[0:], h.Length)
	binary.LittleEndian.PutUint32(b[4:], h.Version)
	binary.LittleEndian.PutUint32(b[8:], h.Message)
	binary.LittleEndian.PutUint32(b[12:], h.Tag)
	return b
}

// readMuxPacket reads one header and its payload.
func readMuxPacket(r io.Reader) (muxHeader, []byte, error) {
	var hb [muxHeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return muxHeader{}, nil, err
	}
	h, err := parseMuxHeader(hb[:])
	if err != nil {
		return h, nil, err
	}
	payload := make([]byte, h.Length-muxHeaderSize)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, fmt.Errorf("usbmuxd: read %d-byte payload: %w", len(payload), err)
	}
	return h, payload, nil
}

// encodeMuxPlist frames v as a version-1 PLIST packet. The payload is always XML because
// libusbmuxd 2.0.2 parses replies with an XML-only parser (protocol.md §0.4).
func encodeMuxPlist(tag uint32, v any) ([]byte, error) {
	body, err := plistio.Marshal(v, plistio.XML)
	if err != nil {
		return nil, fmt.Errorf("usbmuxd: encode reply: %w", err)
	}
	h := muxHeader{Length: uint32(muxHeaderSize + len(body)), Version: muxVersionPlist, Message: muxMsgPlist, Tag: tag}
	return append(h.encode(), body...), nil
}

// encodeMuxBinaryResult frames a version-0 binary RESULT packet; used only to tell a
// binary-protocol client that it must speak plist.
func encodeMuxBinaryResult(tag, number uint32) []byte {
	h := muxHeader{Length: muxHeaderSize + 4, Version: muxVersionBinary, Message: muxMsgResult, Tag: tag}
	b := h.encode()
	return binary.LittleEndian.AppendUint32(b, number)
}

// muxRequest is a decoded plist-protocol request with the keys the simulator acts on.
type muxRequest struct {
	MessageType    string
	DeviceID       int64 // 0 when absent
	HasDeviceID    bool
	Port           uint16 // PortNumber after undoing the client's htons
	HasPort        bool
	PairRecordID   string
	HasRecordID    bool
	PairRecordData []byte
}

// decodeMuxRequest parses a plist-protocol request payload (XML or binary).
func decodeMuxRequest(payload []byte) (muxRequest, error) {
	var m map[string]any
	if err := plistio.Unmarshal(payload, &m); err != nil {
		return muxRequest{}, fmt.Errorf("usbmuxd: %w", err)
	}
	var r muxRequest
	var ok bool
	if r.MessageType, ok = m["MessageType"].(string); !ok {
		return muxRequest{}, errors.New("usbmuxd: request without MessageType")
	}
	if v, present := m["DeviceID"]; present {
		id, ok := plistio.Int(v)
		if !ok {
			return muxRequest{}, fmt.Errorf("usbmuxd: DeviceID of type %T", v)
		}
		r.DeviceID, r.HasDeviceID = id, true
	}
	if v, present := m["PortNumber"]; present {
		p, ok := plistio.Int(v)
		if !ok || p < 0 || p > 0xFFFF {
			return muxRequest{}, fmt.Errorf("usbmuxd: bad PortNumber %v", v)
		}
		// Clients send htons(port) as a plain integer (62078 arrives as 32498).
		r.Port, r.HasPort = swap16(uint16(p)), true
	}
	if v, present := m["PairRecordID"]; present {
		s, ok := v.(string)
		if !ok {
			return muxRequest{}, fmt.Errorf("usbmuxd: PairRecordID of type %T", v)
		}
		r.PairRecordID, r.HasRecordID = s, true
	}
	if v, present := m["PairRecordData"]; present {
		b, ok := v.([]byte)
		if !ok {
			return muxRequest{}, fmt.Errorf("usbmuxd: PairRecordData of type %T", v)
		}
		r.PairRecordData = b
	}
	return r, nil
}

func swap16(v uint16) uint16 { return v<<8 | v>>8 }

// validRecordID reports whether a PairRecordID is safe to use as a file name: UDID-like
// characters only, so "../x", "/etc/x" or "a\x00b" can never reach the filesystem
// (usbmuxd issue #272 was exactly this path traversal).
func validRecordID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
		default:
			return false
		}
	}
	return true
}
