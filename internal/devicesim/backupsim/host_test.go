package backupsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/devicelink"
	"snapback/internal/plistio"
)

// testHost is a minimal backup host for driving the device over DeviceLink in tests. It
// behaves like idevicebackup2 (same answers, same file layout) but validates every path the
// device sends, as Snapback's host must.
type testHost struct {
	root string // backup root; the device writes <root>/<UDID>/…
	udid string

	free          int64                       // GetFreeDiskSpace answer; 0 = plenty
	answerPurge   bool                        // false: never answer PurgeDiskSpace (Debian's idevicebackup2)
	failRemove    bool                        // RemoveItems of <UDID>/Snapshot fails
	discardUpload bool                        // do not write uploads (benchmarks)
	versions      []any                       // Hello versions; nil = [2.0, 2.1]
	pipe          func() (host, dev net.Conn) // nil = net.Pipe

	mu       sync.Mutex
	messages []string // device message names in order
	refused  int      // hostile paths refused
}

// validPath is the check the host applies to every device path (protocol.md §11).
func (h *testHost) validPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return false
	}
	parts := strings.Split(p, "/")
	if parts[0] != h.udid {
		return false
	}
	for _, c := range parts {
		if c == ".." || c == "." || c == "" {
			return false
		}
	}
	return true
}

func (h *testHost) local(p string) string { return filepath.Join(h.root, filepath.FromSlash(p)) }

func (h *testHost) note(name string) {
	h.mu.Lock()
	// Clone: howett.net/plist returns strings that share the decoded frame's buffer, so
	// keeping the name would keep every frame alive.
	h.messages = append(h.messages, strings.Clone(name))
	h.mu.Unlock()
}

func (h *testHost) refuse() {
	h.mu.Lock()
	h.refused++
	h.mu.Unlock()
}

func (h *testHost) seen(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.messages {
		if m == name {
			n++
		}
	}
	return n
}

// session runs the handshake and one request on a fresh pipe to d, then disconnects. It
// returns the final ProcessMessage dict and Serve's error.
func (h *testHost) session(t testing.TB, d *Device, n Notifier, req map[string]any) map[string]any {
	t.Helper()
	pipe := h.pipe
	if pipe == nil {
		pipe = net.Pipe
	}
	hostEnd, devEnd := pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, devEnd, n) }()
	c := devicelink.NewConn(hostEnd)
	res, err := h.drive(c, req)
	if err != nil {
		hostEnd.Close()
		t.Fatalf("host: %v (serve: %v)", err, <-done)
	}
	if err := c.WriteMessage(devicelink.Disconnect, devicelink.EmptyParameter); err != nil {
		t.Fatalf("host: disconnect: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve = %v; want nil after Disconnect", err)
	}
	hostEnd.Close()
	return res
}

func (h *testHost) drive(c *devicelink.Conn, req map[string]any) (map[string]any, error) {
	m, err := c.ReadMessage()
	if err != nil {
		return nil, err
	}
	if m.Name() != devicelink.VersionExchange {
		return nil, fmt.Errorf("first message %v", []any(m))
	}
	if maj, _ := plistio.Int(m.Arg(1)); maj != 400 {
		return nil, fmt.Errorf("device DL version %v; want 400", m.Arg(1))
	}
	if err := c.WriteMessage(devicelink.VersionExchange, devicelink.VersionsOk, uint64(400)); err != nil {
		return nil, err
	}
	if m, err = c.ReadMessage(); err != nil || m.Name() != devicelink.DeviceReady {
		return nil, fmt.Errorf("device ready: %v %v", m, err)
	}
	vers := h.versions
	if vers == nil {
		vers = []any{2.0, 2.1}
	}
	if err := c.SendProcessMessage(map[string]any{"MessageName": "Hello", "SupportedProtocolVersions": vers}); err != nil {
		return nil, err
	}
	if m, err = c.ReadMessage(); err != nil {
		return nil, err
	}
	hello, _ := m.Arg(1).(map[string]any)
	if code, _ := plistio.Int(hello["ErrorCode"]); code != 0 || req == nil {
		return hello, nil
	}
	if err := c.SendProcessMessage(req); err != nil {
		return nil, err
	}
	for {
		m, err := c.ReadMessage()
		if err != nil {
			return nil, err
		}
		h.note(m.Name())
		if m.Name() == devicelink.ProcessMessage {
			res, _ := m.Arg(1).(map[string]any)
			return res, nil
		}
		if err := h.handle(c, m); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name(), err)
		}
	}
}

func (h *testHost) handle(c *devicelink.Conn, m devicelink.Message) error {
	switch m.Name() {
	case devicelink.DownloadFiles:
		paths, _ := m.Arg(1).([]any)
		errs := map[string]any{}
		for _, pv := range paths {
			p, _ := pv.(string)
			if err := c.WriteName(p); err != nil {
				return err
			}
			var f *os.File
			var err error
			if !h.validPath(p) {
				h.refuse()
				err = errors.New("invalid path")
			} else {
				f, err = os.Open(h.local(p))
			}
			if err != nil {
				errs[p] = map[string]any{"DLFileErrorCode": int64(devicelink.ErrCodeNoEntry), "DLFileErrorString": err.Error()}
				if err := c.WriteBlock(devicelink.CodeErrorLocal, []byte(err.Error())); err != nil {
					return err
				}
				continue
			}
			_, err = c.WriteFileData(f, nil)
			f.Close()
			if err != nil {
				return err
			}
			if err := c.WriteBlock(devicelink.CodeSuccess, nil); err != nil {
				return err
			}
		}
		if err := c.WriteTerminator(); err != nil {
			return err
		}
		if len(errs) > 0 {
			return c.SendStatus(devicelink.ErrCodeMultiStatus, "Multi status", errs)
		}
		return c.SendStatus(0, "", nil)
	case devicelink.UploadFiles:
		if len(m) < 4 {
			return fmt.Errorf("UploadFiles with %d elements; libimobiledevice needs 4", len(m))
		}
		status := int64(0)
		for {
			if _, err := c.ReadName(); errors.Is(err, devicelink.ErrStreamEnd) {
				break
			} else if err != nil {
				return err
			}
			name, err := c.ReadName()
			if err != nil {
				return err
			}
			var w io.Writer = io.Discard
			var f *os.File
			if !h.validPath(name) {
				h.refuse()
				status = devicelink.ErrCodeGeneric
			} else if !h.discardUpload {
				if f, err = os.CreateTemp(filepath.Dir(h.local(name)), ".upload-*"); err != nil {
					return err
				}
				w = f
			}
			res, err := c.ReadFileBody(w)
			if f != nil {
				f.Close()
				if err == nil && res.Code == devicelink.CodeSuccess {
					if err := os.Rename(f.Name(), h.local(name)); err != nil {
						return err
					}
				} else {
					os.Remove(f.Name())
				}
			}
			if errors.Is(err, devicelink.ErrStreamEnd) {
				break
			}
			if err != nil {
				return err
			}
		}
		return c.SendStatus(status, "", nil)
	case devicelink.GetFreeDiskSpace:
		free := h.free
		if free == 0 {
			free = 1 << 40
		}
		return c.SendStatus(0, "", uint64(free))
	case devicelink.PurgeDiskSpace:
		if h.answerPurge {
			return c.SendStatus(-1, "Operation not supported", nil)
		}
		return nil
	case devicelink.CreateDirectory:
		p, _ := m.Arg(1).(string)
		if !h.validPath(p) {
			h.refuse()
			return c.SendStatus(devicelink.ErrCodeGeneric, "invalid path", nil)
		}
		if err := os.MkdirAll(h.local(p), 0o755); err != nil {
			return c.SendStatus(devicelink.ErrCodeIO, err.Error(), nil)
		}
		return c.SendStatus(0, "", nil)
	case devicelink.MoveItems:
		for _, mv := range devicelink.MovesOf(m.Arg(1)) {
			src, dst := mv.Src, mv.Dst
			if !h.validPath(src) || !h.validPath(dst) {
				h.refuse()
				return c.SendStatus(devicelink.ErrCodeGeneric, "invalid path", nil)
			}
			if h.discardUpload {
				continue // nothing was written
			}
			os.RemoveAll(h.local(dst))
			if err := os.Rename(h.local(src), h.local(dst)); err != nil {
				return c.SendStatus(devicelink.ErrCodeNoEntry, err.Error(), nil)
			}
		}
		return c.SendStatus(0, "", nil)
	case devicelink.RemoveItems:
		paths, _ := m.Arg(1).([]any)
		code := int64(0)
		for _, pv := range paths {
			p, _ := pv.(string)
			if !h.validPath(p) {
				h.refuse()
				code = devicelink.ErrCodeGeneric
				continue
			}
			if h.failRemove && p == h.udid+"/Snapshot" {
				code = devicelink.ErrCodeIO
				continue
			}
			if err := os.RemoveAll(h.local(p)); err != nil {
				code = devicelink.ErrCodeIO
			}
		}
		return c.SendStatus(code, "", nil)
	case devicelink.ContentsOfDirectory, devicelink.CopyItem:
		p, _ := m.Arg(1).(string)
		if m.Name() == devicelink.CopyItem {
			p, _ = m.Arg(2).(string)
		}
		if !h.validPath(p) {
			h.refuse()
			return c.SendStatus(devicelink.ErrCodeGeneric, "invalid path", nil)
		}
		return c.SendStatus(0, "", nil)
	}
	return fmt.Errorf("unexpected device message %v", []any(m))
}

// recorder is a Notifier that remembers what was posted, with times.
type recorder struct {
	mu    sync.Mutex
	names []string
	times []time.Time
}

func (r *recorder) Post(name string) {
	r.mu.Lock()
	r.names = append(r.names, name)
	r.times = append(r.times, time.Now())
	r.mu.Unlock()
}

func (r *recorder) posted() ([]string, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...), append([]time.Time(nil), r.times...)
}
