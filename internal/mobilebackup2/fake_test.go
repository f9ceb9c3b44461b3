package mobilebackup2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"snapback/internal/devicelink"
	"snapback/internal/plistio"
)

const testUDID = "00008030-001D35093EF2402E"

// fakeDevice is a scripted device side over net.Pipe, written with devicelink like the
// simulator, so tests exercise exact bytes without the simulator package.
type fakeDevice struct {
	t    *testing.T
	conn net.Conn
	dl   *devicelink.Conn
}

// pair returns a host Client and a fake device joined by net.Pipe.
func pair(t *testing.T) (*Client, *fakeDevice) {
	t.Helper()
	h, d := net.Pipe()
	t.Cleanup(func() { h.Close(); d.Close() })
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewClient(h, func() time.Time { return fixed })
	return c, &fakeDevice{t: t, conn: d, dl: devicelink.NewConn(d)}
}

// run starts script on its own goroutine and returns a function that waits for it.
func (d *fakeDevice) run(script func(d *fakeDevice) error) func() error {
	done := make(chan error, 1)
	go func() {
		err := script(d)
		if err != nil {
			d.conn.Close() // unblock the host so the test reports the script's error
		}
		done <- err
	}()
	return func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("fake device script did not finish")
		}
	}
}

func (d *fakeDevice) send(elems ...any) error { return d.dl.WriteMessage(elems...) }

func (d *fakeDevice) recv() (devicelink.Message, error) { return d.dl.ReadMessage() }

// handshake plays the device side of the version exchange and Hello.
func (d *fakeDevice) handshake() error {
	if err := d.send(devicelink.VersionExchange, uint64(400), uint64(0)); err != nil {
		return err
	}
	m, err := d.recv()
	if err != nil {
		return err
	}
	if m.Name() != devicelink.VersionExchange || m.Arg(1) != devicelink.VersionsOk {
		return errors.New("bad versions reply")
	}
	if err := d.send(devicelink.DeviceReady); err != nil {
		return err
	}
	if _, err := d.recv(); err != nil { // Hello
		return err
	}
	return d.send(devicelink.ProcessMessage, map[string]any{"MessageName": "Response", "ErrorCode": uint64(0), "ProtocolVersion": 2.1})
}

// expectBackup reads the Backup request.
func (d *fakeDevice) expectBackup() (map[string]any, error) {
	m, err := d.recv()
	if err != nil {
		return nil, err
	}
	dict, _ := m.Arg(1).(map[string]any)
	if dict["MessageName"] != "Backup" {
		return nil, errors.New("expected Backup request")
	}
	return dict, nil
}

// status reads a DLMessageStatusResponse and returns code and the third element.
func (d *fakeDevice) status() (int64, any, error) {
	m, err := d.recv()
	if err != nil {
		return 0, nil, err
	}
	if m.Name() != devicelink.StatusResponse {
		return 0, nil, errors.New("expected status response, got " + m.Name())
	}
	code, _ := plistio.Int(m.Arg(1))
	return code, m.Arg(3), nil
}

// upload sends one UploadFiles batch. A file with remoteErr set ends with ERROR_REMOTE.
type upFile struct {
	name      string
	data      []byte
	remoteErr string
}

func (d *fakeDevice) upload(files ...upFile) (int64, error) {
	var total uint64
	for _, f := range files {
		total += uint64(len(f.data))
	}
	if err := d.send(devicelink.UploadFiles, map[string]any{}, 50.0, total); err != nil {
		return 0, err
	}
	for _, f := range files {
		if err := d.dl.WriteName("device/" + f.name); err != nil {
			return 0, err
		}
		if err := d.dl.WriteName(f.name); err != nil {
			return 0, err
		}
		buf := make([]byte, devicelink.BlockSize)
		if _, err := d.dl.WriteFileData(bytes.NewReader(f.data), buf); err != nil {
			return 0, err
		}
		code, body := devicelink.CodeSuccess, []byte(nil)
		if f.remoteErr != "" {
			code, body = devicelink.CodeErrorRemote, []byte(f.remoteErr)
		}
		if err := d.dl.WriteBlock(code, body); err != nil {
			return 0, err
		}
	}
	if err := d.dl.WriteTerminator(); err != nil {
		return 0, err
	}
	code, _, err := d.status()
	return code, err
}

// download asks for files and returns their contents (nil for an error) and the status code.
func (d *fakeDevice) download(paths ...string) (map[string][]byte, int64, error) {
	list := make([]any, len(paths))
	for i, p := range paths {
		list[i] = p
	}
	if err := d.send(devicelink.DownloadFiles, list, map[string]any{}, 10.0, uint64(0)); err != nil {
		return nil, 0, err
	}
	out := map[string][]byte{}
	for {
		name, err := d.dl.ReadName()
		if errors.Is(err, devicelink.ErrStreamEnd) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		var b bytes.Buffer
		res, err := d.dl.ReadFileBody(&b)
		if err != nil {
			return nil, 0, err
		}
		if res.Code == devicelink.CodeSuccess {
			out[name] = b.Bytes()
		} else {
			out[name] = nil
		}
	}
	code, _, err := d.status()
	return out, code, err
}

// simple sends a request and returns the status code and extra element.
func (d *fakeDevice) simple(elems ...any) (int64, any, error) {
	if err := d.send(elems...); err != nil {
		return 0, nil, err
	}
	return d.status()
}

func (d *fakeDevice) finish(code int64, desc string) error {
	dict := map[string]any{"MessageName": "Response", "ErrorCode": code}
	if desc != "" {
		dict["ErrorDescription"] = desc
	}
	return d.send(devicelink.ProcessMessage, dict)
}

func statusPlist(t *testing.T, state string) []byte {
	t.Helper()
	b, err := plistio.Marshal(map[string]any{
		"IsFullBackup": true, "SnapshotState": state, "UUID": "ABC", "Version": "3.3", "BackupState": "new",
	}, plistio.Binary)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// drain discards everything the host sends (used when the device stops scripting).
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, r) }

func mustBackup(t *testing.T, c *Client, root string, full bool) (Result, []Event, error) {
	t.Helper()
	var evs []Event
	em := NewEmitter(func(e Event) { evs = append(evs, e) }, func() time.Time { return time.Time{} })
	res, err := c.Backup(context.Background(), BackupOptions{Root: root, UDID: testUDID, ForceFullBackup: full, Events: em})
	return res, evs, err
}

func backupWith(t *testing.T, c *Client, opt BackupOptions) (Result, error) {
	t.Helper()
	opt.UDID = testUDID
	opt.Events = NewEmitter(nil, func() time.Time { return time.Time{} })
	return c.Backup(context.Background(), opt)
}
