package devicelink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"snapback/internal/plistio"
)

func TestDecodeMessageRules(t *testing.T) {
	tests := []struct {
		name string
		msg  any
		ok   bool
	}{
		{"version exchange", []any{VersionExchange, uint64(400), uint64(0)}, true},
		{"short name", []any{"DLshort"}, false},
		{"not DL", []any{"XXMessageSomething"}, false},
		{"empty array", []any{}, false},
		{"dict root", map[string]any{"DLMessageX": 1}, false},
		{"int first", []any{uint64(1), "DLMessageX"}, false},
	}
	for _, tt := range tests {
		for _, f := range []plistio.Format{plistio.Binary, plistio.XML} {
			b, err := plistio.Marshal(tt.msg, f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = DecodeMessage(b)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrNotDeviceLink)) {
				t.Errorf("DecodeMessage(%s, format %d) error = %v; want ok=%v", tt.name, f, err, tt.ok)
			}
		}
	}
}

// Status codes arrive as int64 (libplist) or uint64 two's complement (pymobiledevice3).
func TestStatusCodeBothEncodings(t *testing.T) {
	for _, v := range []any{int64(-13), uint64(18446744073709551603)} {
		b, _ := plistio.Marshal([]any{StatusResponse, v, "Multi status", map[string]any{}}, plistio.Binary)
		m, err := DecodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		if code, ok := plistio.Int(m.Arg(1)); !ok || code != ErrCodeMultiStatus {
			t.Errorf("status %T %v decodes to %d, %v; want -13", v, v, code, ok)
		}
	}
}

func TestStreamBounds(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxNameLen+1)
	if _, err := readConn(hdr[:]).ReadName(); err == nil || errors.Is(err, ErrStreamEnd) {
		t.Errorf("ReadName(%d-byte name) error = %v; want a length error", MaxNameLen+1, err)
	}
	binary.BigEndian.PutUint32(hdr[:], MaxBlockLen+1)
	if _, err := readConn(append(hdr[:], CodeFileData)).ReadFileBody(io.Discard); err == nil {
		t.Error("ReadFileBody accepted a block above MaxBlockLen")
	}
	// Truncated data is an unexpected EOF, not a clean end.
	_, err := readConn([]byte{0, 0, 0, 10, CodeFileData, 1, 2}).ReadFileBody(io.Discard)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated block error = %v; want io.ErrUnexpectedEOF", err)
	}
}

func TestWriteFileDataBlockSize(t *testing.T) {
	var out bytes.Buffer
	c := NewConn(struct {
		io.Reader
		io.Writer
	}{strings.NewReader(""), &out})
	data := bytes.Repeat([]byte{1}, 2*BlockSize+5)
	if n, err := c.WriteFileData(bytes.NewReader(data), nil); err != nil || n != int64(len(data)) {
		t.Fatalf("WriteFileData = %d, %v", n, err)
	}
	c.Flush()
	b := out.Bytes()
	var sizes []int
	for len(b) > 0 {
		n := int(binary.BigEndian.Uint32(b))
		if b[4] != CodeFileData {
			t.Fatalf("block code 0x%02x", b[4])
		}
		sizes = append(sizes, n-1)
		b = b[4+n:]
	}
	if len(sizes) != 3 || sizes[0] != BlockSize || sizes[1] != BlockSize || sizes[2] != 5 {
		t.Errorf("block sizes %v; want [%d %d 5]", sizes, BlockSize, BlockSize)
	}
}

// A failing destination does not desynchronise the stream: the rest of the file is drained
// and the next file reads correctly.
func TestReadFileBodyWriterFailureKeepsSync(t *testing.T) {
	stream := []byte{0, 0, 0, 4, CodeFileData, 'a', 'b', 'c', 0, 0, 0, 3, CodeFileData, 'd', 'e', 0, 0, 0, 1, CodeSuccess,
		0, 0, 0, 2, 'o', 'k'}
	c := readConn(stream)
	res, err := c.ReadFileBody(failWriter{})
	if err == nil || res.Code != CodeSuccess {
		t.Fatalf("ReadFileBody(failing writer) = %+v, %v; want the write error after SUCCESS", res, err)
	}
	if name, err := c.ReadName(); err != nil || name != "ok" {
		t.Errorf("next name = %q, %v; want ok", name, err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
