package mobilebackup2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"snapback/internal/devicelink"
	"snapback/internal/failure"
	"snapback/internal/plistio"
)

// restoreSource builds base/snapshots/20260101-000000: a backup folder named by its ID,
// not by the UDID, plus a decoy base/<UDID> folder and a secret outside it.
func restoreSource(t *testing.T, state string, encrypted bool) (base, src string) {
	t.Helper()
	base = t.TempDir()
	src = filepath.Join(base, "snapshots", "20260101-000000")
	mp, err := plistio.Marshal(map[string]any{"IsEncrypted": encrypted, "Version": "10.0"}, plistio.Binary)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"Info.plist":                          []byte("<plist/>"),
		"Status.plist":                        statusPlist(t, state),
		"Manifest.plist":                      mp,
		"Manifest.db":                         bytes.Repeat([]byte("db"), 40000),
		"ab/ab1234":                           []byte("blob content"),
		"../../secret":                        []byte("outside"),
		"../../" + testUDID + "/Status.plist": []byte("decoy: not the snapshot"),
	}
	for name, b := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(base, "secret"), filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	return base, src
}

func mustRestore(c *Client, opt RestoreOptions) (Result, []Event, error) {
	var evs []Event
	opt.Events = NewEmitter(func(e Event) { evs = append(evs, e) }, func() time.Time { return time.Time{} })
	if opt.TargetUDID == "" {
		opt.TargetUDID = testUDID
	}
	res, err := c.Restore(context.Background(), opt)
	return res, evs, err
}

func (d *fakeDevice) expectRestore() (map[string]any, error) {
	m, err := d.recv()
	if err != nil {
		return nil, err
	}
	dict, _ := m.Arg(1).(map[string]any)
	if dict["MessageName"] != "Restore" {
		return nil, fmt.Errorf("expected Restore request, got %v", m)
	}
	return dict, nil
}

// TestRestoreServesSnapshotReadOnly: the device reads the snapshot through <UDID>/ paths;
// every write, every escape and every symlink is refused, and the folder (and everything
// around it) is byte-for-byte unchanged.
func TestRestoreServesSnapshotReadOnly(t *testing.T) {
	base, src := restoreSource(t, "finished", false)
	before := hashTree(t, base, "")
	u := testUDID
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		req, err := d.expectRestore()
		if err != nil {
			return err
		}
		opts, _ := req["Options"].(map[string]any)
		if req["TargetIdentifier"] != u || req["SourceIdentifier"] != u || opts["RestoreSystemFiles"] != true ||
			opts["RestoreShouldReboot"] != false || opts["RestoreDontCopyBackup"] != true ||
			opts["RestorePreserveSettings"] != true || opts["RemoveItemsNotRestored"] != false {
			return fmt.Errorf("request %v", req)
		}
		if _, ok := opts["Password"]; ok {
			return errors.New("password sent for a plain backup")
		}
		files, code, err := d.download(u+"/Status.plist", u+"/Manifest.db", u+"/ab/ab1234")
		if err != nil || code != 0 {
			return fmt.Errorf("download %v %v", code, err)
		}
		if !bytes.Equal(files[u+"/ab/ab1234"], []byte("blob content")) || len(files[u+"/Manifest.db"]) != 80000 ||
			bytes.Contains(files[u+"/Status.plist"], []byte("decoy")) {
			return fmt.Errorf("wrong content served: %q", files[u+"/ab/ab1234"])
		}
		code, list, err := d.simple(devicelink.ContentsOfDirectory, u)
		if m, _ := list.(map[string]any); err != nil || code != 0 || m["Manifest.db"] == nil {
			return fmt.Errorf("contents %v %v %v", code, list, err)
		}
		// Hostile and writing requests.
		hostile := []string{"../secret", u + "/../../secret", u + "/link", "/etc/passwd", u + `\..\x`}
		got, code, err := d.download(hostile...)
		if err != nil || code != devicelink.ErrCodeMultiStatus {
			return fmt.Errorf("hostile download %v %v", code, err)
		}
		for p, b := range got {
			if b != nil {
				return fmt.Errorf("read %q", p)
			}
		}
		if code, err := d.upload(upFile{name: u + "/new", data: []byte("x")}, upFile{name: u + "/Info.plist", data: []byte("x")},
			upFile{name: "../evil", data: []byte("x")}); err != nil || code == 0 {
			return fmt.Errorf("upload accepted: %v %v", code, err)
		}
		for _, m := range [][]any{
			{devicelink.CreateDirectory, u + "/Snapshot"},
			{devicelink.RemoveItems, []any{u + "/Info.plist"}, map[string]any{}, 1.0},
			{devicelink.MoveItems, map[string]any{u + "/Info.plist": u + "/moved"}, map[string]any{}, 1.0},
			{devicelink.CopyItem, u + "/Info.plist", u + "/copied"},
			{devicelink.CopyItem, u + "/link", u + "/copied"},
		} {
			if code, _, err := d.simple(m...); err != nil || code == 0 {
				return fmt.Errorf("%v accepted: %v %v", m[0], code, err)
			}
		}
		// The stream stayed in sync: a normal read still works.
		if files, code, err := d.download(u + "/Info.plist"); err != nil || code != 0 || string(files[u+"/Info.plist"]) != "<plist/>" {
			return fmt.Errorf("read after refusals: %v %v", code, err)
		}
		return d.finish(0, "")
	})
	res, evs, err := mustRestore(c, RestoreOptions{Source: src, System: true, PreserveSettings: true})
	if werr := wait(); werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if res.FilesSent != 4 || res.BytesSent != int64(len("blob content")+80000+len("<plist/>"))+int64(len(statusPlist(t, "finished"))) {
		t.Errorf("result %+v", res)
	}
	last := evs[len(evs)-1]
	if last.Kind != EventFinished || last.FilesDone != 4 || last.BytesDone != res.BytesSent || last.BytesExpected < res.BytesSent {
		t.Errorf("last event %+v", last)
	}
	if after := hashTree(t, base, ""); fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("something changed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestRestoreRefusesLocally: an unfinished backup is never offered to the device, and an
// encrypted one needs a password before anything is sent.
func TestRestoreRefusesLocally(t *testing.T) {
	for _, tc := range []struct {
		name      string
		state     string
		encrypted bool
		want      error
	}{
		{"unfinished", "new", false, failure.Incomplete},
		{"encrypted without password", "finished", true, failure.WrongPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, src := restoreSource(t, tc.state, tc.encrypted)
			c, d := pair(t)
			wait := d.run(func(d *fakeDevice) error {
				m, err := d.recv()
				if err != nil {
					return err
				}
				if m.Name() != devicelink.Disconnect {
					return fmt.Errorf("device got %v; want only Disconnect", m)
				}
				return nil
			})
			_, evs, err := mustRestore(c, RestoreOptions{Source: src})
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v; want %v", err, tc.want)
			}
			if len(evs) == 0 || evs[len(evs)-1].Kind != EventFailed {
				t.Errorf("events %+v; want a final failure", evs)
			}
			if err := c.Disconnect(); err != nil {
				t.Fatal(err)
			}
			if err := wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRestoreDeviceErrors: the device's result codes are typed, and an encrypted backup's
// password goes in Options.
func TestRestoreDeviceErrors(t *testing.T) {
	for _, tc := range []struct {
		code int64
		want error
	}{{207, failure.WrongPassword}, {105, failure.NoSpace}, {205, failure.DeviceError}} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			_, src := restoreSource(t, "finished", true)
			c, d := pair(t)
			wait := d.run(func(d *fakeDevice) error {
				req, err := d.expectRestore()
				if err != nil {
					return err
				}
				if opts, _ := req["Options"].(map[string]any); opts["Password"] != "sekrit" {
					return fmt.Errorf("password not in Options: %v", opts)
				}
				return d.finish(tc.code, "device says no")
			})
			pw := []byte("sekrit")
			_, _, err := mustRestore(c, RestoreOptions{Source: src, Password: func() ([]byte, error) { return pw, nil }})
			if werr := wait(); werr != nil {
				t.Fatal(werr)
			}
			var e *failure.Error
			if !errors.Is(err, tc.want) || !errors.As(err, &e) || e.DeviceCode != tc.code {
				t.Errorf("err = %v; want %v with device code %d", err, tc.want, tc.code)
			}
			if string(pw) == "sekrit" {
				t.Error("password bytes not cleared after use")
			}
		})
	}
}
