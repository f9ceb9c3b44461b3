package devicelink

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"snapback/internal/plistio"
)

// readConn returns a Conn that reads b and discards writes.
func readConn(b []byte) *Conn {
	return NewConn(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(b), io.Discard})
}

func encodeMessage(t testing.TB, f plistio.Format, elems ...any) []byte {
	t.Helper()
	b, err := plistio.Marshal(elems, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecodeMessage feeds arbitrary control-message payloads (they come from the peer). The
// decoder must never panic, and whatever it accepts must satisfy libimobiledevice's rule (an
// array whose first element is a "DL…" string of at least 9 characters) and re-encode.
func FuzzDecodeMessage(f *testing.F) {
	for _, fm := range []plistio.Format{plistio.Binary, plistio.XML} {
		f.Add(encodeMessage(f, fm, VersionExchange, uint64(400), uint64(0)))
		f.Add(encodeMessage(f, fm, ProcessMessage, map[string]any{"MessageName": "Hello", "SupportedProtocolVersions": []any{2.0, 2.1}}))
		f.Add(encodeMessage(f, fm, UploadFiles, map[string]any{}, 12.5, uint64(1<<40)))
		f.Add(encodeMessage(f, fm, StatusResponse, int64(-13), "Multi status", map[string]any{"a": map[string]any{"DLFileErrorCode": int64(-6)}}))
	}
	f.Add([]byte("bplist00"))
	f.Add([]byte(`<?xml version="1.0"?><plist><array><string>DLshort</string></array></plist>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrNotDeviceLink) {
				t.Fatalf("DecodeMessage error %v does not wrap ErrNotDeviceLink", err)
			}
			return
		}
		name := m.Name()
		if len(m) == 0 || len(name) < 9 || !strings.HasPrefix(name, "DL") {
			t.Fatalf("accepted a non-DeviceLink message %v", []any(m))
		}
		_ = m.Arg(-1)
		_ = m.Arg(len(m))
		enc, err := plistio.Marshal([]any(m), plistio.Binary)
		if err != nil {
			return // e.g. values howett can decode but not encode; not the decoder's concern
		}
		again, err := DecodeMessage(enc)
		// howett.net/plist re-encodes invalid UTF-8 lossily, so only the length is stable then.
		if err != nil || (utf8.ValidString(name) && again.Name() != name) || len(again) != len(m) {
			t.Fatalf("re-encoded message decodes as %v, %v; want %d elements named %q", again, err, len(m), name)
		}
	})
}

// FuzzReadFileBody feeds arbitrary raw-stream bytes. It must never panic or allocate from
// an announced length, must count exactly the bytes it wrote, and must end only on a
// defined block code.
func FuzzReadFileBody(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, CodeFileData, 'a', 'b', 'c', 0, 0, 0, 1, CodeSuccess})
	f.Add([]byte{0, 0, 0, 0})
	f.Add(append([]byte{0, 0, 0, 0x1a, CodeErrorLocal}, "No such file or directory"...))
	f.Add([]byte{0, 0, 0, 6, CodeErrorRemote, 'o', 'o', 'p', 's', '!'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, CodeFileData})
	f.Add([]byte{0x03, 0xff, 0xff, 0xff, CodeFileData, 1, 2, 3})
	f.Add([]byte{0, 0, 0, 2, 0x42, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		res, err := readConn(b).ReadFileBody(&out)
		if res.Bytes != int64(out.Len()) {
			t.Fatalf("FileResult.Bytes = %d; wrote %d", res.Bytes, out.Len())
		}
		if out.Len() > len(b) {
			t.Fatalf("wrote %d bytes from %d input bytes", out.Len(), len(b))
		}
		if len(res.Err) > 4096 {
			t.Fatalf("error text of %d bytes kept; want ≤ 4096", len(res.Err))
		}
		if err == nil {
			switch res.Code {
			case CodeSuccess, CodeErrorLocal, CodeErrorRemote:
			default:
				t.Fatalf("ended without error on code 0x%02x", res.Code)
			}
		}
	})
}

// FuzzFileStreamRoundTrip writes data the way both sides send files (names, 32 KiB DATA
// blocks, SUCCESS, terminator) and reads it back.
func FuzzFileStreamRoundTrip(f *testing.F) {
	f.Add("UDID/Snapshot/ab/abcdef", []byte("hello"))
	f.Add("", []byte{})
	f.Add("x", bytes.Repeat([]byte{7}, BlockSize+1))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		if len(name) > MaxNameLen {
			return
		}
		var stream bytes.Buffer
		w := NewConn(struct {
			io.Reader
			io.Writer
		}{strings.NewReader(""), &stream})
		if err := w.WriteName(name); err != nil {
			t.Fatal(err)
		}
		if n, err := w.WriteFileData(bytes.NewReader(data), nil); err != nil || n != int64(len(data)) {
			t.Fatalf("WriteFileData = %d, %v", n, err)
		}
		if err := w.WriteBlock(CodeSuccess, nil); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTerminator(); err != nil {
			t.Fatal(err)
		}
		r := NewConn(struct {
			io.Reader
			io.Writer
		}{bufio.NewReader(&stream), io.Discard})
		got, err := r.ReadName()
		if name == "" {
			if !errors.Is(err, ErrStreamEnd) {
				t.Fatalf("empty name read as %q, %v; want ErrStreamEnd", got, err)
			}
			return
		}
		if err != nil || got != name {
			t.Fatalf("ReadName = %q, %v; want %q", got, err, name)
		}
		var out bytes.Buffer
		res, err := r.ReadFileBody(&out)
		if err != nil || res.Code != CodeSuccess || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("ReadFileBody = %+v, %v, %d bytes; want %d bytes and SUCCESS", res, err, out.Len(), len(data))
		}
		if _, err := r.ReadName(); !errors.Is(err, ErrStreamEnd) {
			t.Fatalf("after the file: %v; want ErrStreamEnd", err)
		}
	})
}
