package mobilebackup2

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/devicelink"
	"snapback/internal/plistio"
)

// FuzzValidatePath: whatever the device sends, an accepted path joined under root stays
// inside root/<udid>.
func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{testUDID + "/a/b", "../x", testUDID + "/../x", "/abs", testUDID + `\x`, testUDID + "/./x", testUDID, "C:/x", testUDID + "/C:x"} {
		f.Add(s)
	}
	root := filepath.FromSlash("/backup/root")
	f.Fuzz(func(t *testing.T, p string) {
		parts, err := ValidatePath(p, testUDID)
		if err != nil {
			return
		}
		joined := filepath.Join(append([]string{root}, parts...)...)
		rel, err := filepath.Rel(filepath.Join(root, testUDID), joined)
		if err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			t.Fatalf("ValidatePath(%q) accepted a path that resolves to %q", p, joined)
		}
	})
}

// devStream is a device → host byte stream built from DL messages and raw stream pieces.
type devStream struct{ bytes.Buffer }

func (d *devStream) msg(elems ...any) {
	b, _ := plistio.Marshal(elems, plistio.Binary)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	d.Write(n[:])
	d.Write(b)
}

func (d *devStream) u32(v uint32) { binary.Write(&d.Buffer, binary.BigEndian, v) }

func (d *devStream) name(s string) { d.u32(uint32(len(s))); d.WriteString(s) }

func (d *devStream) block(code byte, body string) {
	d.u32(uint32(len(body) + 1))
	d.WriteByte(code)
	d.WriteString(body)
}

// scriptedRW feeds a fixed device stream and discards host output.
type scriptedRW struct{ r io.Reader }

func (s scriptedRW) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s scriptedRW) Write(p []byte) (int, error) { return len(p), nil }

// FuzzServe feeds arbitrary device streams (messages and raw file streams) to the server
// loop: it must never panic, never allocate unboundedly, and never create anything outside
// root/<udid>.
func FuzzServe(f *testing.F) {
	u := testUDID
	var s devStream
	s.msg(devicelink.CreateDirectory, u+"/Snapshot")
	s.msg(devicelink.UploadFiles, map[string]any{}, 1.0, uint64(10))
	s.name("d")
	s.name(u + "/Snapshot/f")
	s.block(devicelink.CodeFileData, "hello")
	s.block(devicelink.CodeSuccess, "")
	s.name("d")
	s.name("../escape")
	s.block(devicelink.CodeFileData, "evil")
	s.block(devicelink.CodeSuccess, "")
	s.u32(0)
	s.msg(devicelink.MoveItems, map[string]any{u + "/Snapshot/f": u + "/f"}, map[string]any{}, 5.0)
	s.msg(devicelink.DownloadFiles, []any{u + "/f", "../../etc/passwd"}, map[string]any{}, 5.0)
	s.msg(devicelink.ProcessMessage, map[string]any{"ErrorCode": uint64(0)})
	f.Add(s.Bytes())
	var s2 devStream
	s2.msg(devicelink.UploadFiles, map[string]any{}, 1.0, uint64(10))
	s2.name("d")
	s2.name(u + "/x")
	s2.u32(0xFFFFFFF0) // absurd block length
	f.Add(s2.Bytes())
	var s3 devStream
	s3.msg(devicelink.RemoveItems, []any{u + "/../.."}, map[string]any{}, 1.0)
	s3.msg(devicelink.CopyItem, "/etc/passwd", u+"/p")
	s3.msg(devicelink.ContentsOfDirectory, "..")
	s3.msg("DLMessageUnknownThing")
	s3.msg(devicelink.Disconnect, "bye")
	f.Add(s3.Bytes())

	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		os.MkdirAll(filepath.Join(root, u), 0o755)
		sentinel := filepath.Join(base, "sentinel")
		os.WriteFile(sentinel, []byte("keep"), 0o644)
		var res Result
		srv := &server{
			dl:    devicelink.NewConn(scriptedRW{bytes.NewReader(data)}),
			res:   resolver{root: root, udid: u},
			buf:   make([]byte, devicelink.BlockSize),
			stats: &res,
		}
		done := make(chan struct{})
		go func() { srv.serve(); close(done) }() // any outcome is fine; escaping or hanging is not
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("serve hangs on %x", data)
		}
		filepath.WalkDir(base, func(p string, de os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if p == base || p == root || p == sentinel || strings.HasPrefix(p, filepath.Join(root, u)) {
				return nil
			}
			t.Errorf("created outside the device folder: %s", p)
			return nil
		})
		if b, _ := os.ReadFile(sentinel); string(b) != "keep" {
			t.Error("sentinel changed")
		}
	})
}
