package mobilebackup2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/devicelink"
	"snapback/internal/failure"
	"snapback/internal/plistio"
)

func TestValidatePath(t *testing.T) {
	u := testUDID
	good := []string{u, u + "/Status.plist", u + "/Snapshot/ab/ab12", u + "/a b/..x/x..", u + "/.hidden"}
	for _, p := range good {
		if _, err := ValidatePath(p, u); err != nil {
			t.Errorf("ValidatePath(%q) = %v; want ok", p, err)
		}
	}
	bad := []string{"", "/" + u + "/x", u + "/../x", "../" + u, u + "/./x", u + "//x", u + "/x/", u + "/x\x00y",
		u + `\x`, "OTHER/x", u + "x/y", ".", "..", u + "/..", strings.Repeat("a", MaxPathLen+1)}
	for _, p := range bad {
		if _, err := ValidatePath(p, u); !errors.Is(err, ErrBadPath) {
			t.Errorf("ValidatePath(%q) = %v; want ErrBadPath", p, err)
		}
	}
	if _, err := ValidatePath(u+"/x", ""); err == nil {
		t.Error("ValidatePath with empty udid accepted")
	}
}

func TestResolveRefusesSymlinks(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, testUDID, "Snapshot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, testUDID, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, testUDID, "filelink")); err != nil {
		t.Fatal(err)
	}
	r := resolver{root: root, udid: testUDID}
	for _, p := range []string{testUDID + "/link", testUDID + "/link/secret", testUDID + "/link/new/x", testUDID + "/filelink"} {
		if _, err := r.resolve(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("resolve(%q) = %v; want ErrBadPath", p, err)
		}
		if _, err := r.mkdirAll(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("mkdirAll(%q) = %v; want ErrBadPath", p, err)
		}
	}
	got, err := r.resolve(testUDID + "/Snapshot/new/file")
	if want := filepath.Join(root, testUDID, "Snapshot", "new", "file"); err != nil || got != want {
		t.Errorf("resolve = %q, %v; want %q", got, err, want)
	}
}

func TestHandshake(t *testing.T) {
	c, d := pair(t)
	wait := d.run((*fakeDevice).handshake)
	if err := c.Handshake(context.Background()); err != nil {
		t.Fatalf("Handshake: %v", err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if c.ProtocolVersion != 2.1 || c.DeviceVersion != 400 {
		t.Errorf("versions = %v, %v; want 2.1, 400", c.ProtocolVersion, c.DeviceVersion)
	}
}

func TestHandshakeRejects(t *testing.T) {
	cases := []struct {
		name   string
		script func(d *fakeDevice) error
	}{
		{"version 500", func(d *fakeDevice) error {
			err := d.send(devicelink.VersionExchange, uint64(500), uint64(0))
			drain(d.conn)
			return err
		}},
		{"no common hello version", func(d *fakeDevice) error {
			d.send(devicelink.VersionExchange, uint64(300), uint64(0))
			d.recv()
			d.send(devicelink.DeviceReady)
			d.recv()
			err := d.send(devicelink.ProcessMessage, map[string]any{"ErrorCode": uint64(1)})
			drain(d.conn)
			return err
		}},
		{"not DeviceLink", func(d *fakeDevice) error {
			b, _ := plistio.Marshal(map[string]any{"x": 1}, plistio.XML)
			err := plistio.WriteFrame(d.conn, b)
			drain(d.conn)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, d := pair(t)
			d.run(tc.script)
			err := c.Handshake(context.Background())
			var e *failure.Error
			if !errors.As(err, &e) || (e.Class != failure.Protocol && e.Class != failure.Unknown) {
				t.Fatalf("Handshake = %v; want a protocol error", err)
			}
		})
	}
}

// TestBackupEveryMessage plays a full backup that uses every message kind once.
func TestBackupEveryMessage(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	// Leftover from an interrupted run: must be gone before the device asks anything.
	if err := os.MkdirAll(filepath.Join(root, u, "Snapshot", "zz"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80 000 bytes: several blocks
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		req, err := d.expectBackup()
		if err != nil {
			return err
		}
		if req["TargetIdentifier"] != u || req["Options"] != nil {
			return fmt.Errorf("backup request %v", req)
		}
		if _, err := os.Stat(filepath.Join(root, u, "Snapshot")); !os.IsNotExist(err) {
			return fmt.Errorf("leftover Snapshot still there: %v", err)
		}
		files, code, err := d.download(u + "/Status.plist")
		if err != nil || code != devicelink.ErrCodeMultiStatus || files[u+"/Status.plist"] != nil {
			return fmt.Errorf("download missing Status.plist: %v %v %v", files, code, err)
		}
		if code, extra, err := d.simple(devicelink.GetFreeDiskSpace); err != nil || code != 0 {
			return fmt.Errorf("free space %v %v %v", code, extra, err)
		} else if n, ok := plistio.Int(extra); !ok || n <= 0 {
			return fmt.Errorf("free space extra %v", extra)
		}
		if code, _, err := d.simple(devicelink.PurgeDiskSpace, uint64(1<<30), uint64(0)); err != nil || code != -1 {
			return fmt.Errorf("purge %v %v", code, err)
		}
		for _, dir := range []string{u + "/Snapshot", u + "/Snapshot/ab", u + "/Snapshot/cd"} {
			if code, _, err := d.simple(devicelink.CreateDirectory, dir); err != nil || code != 0 {
				return fmt.Errorf("mkdir %s: %v %v", dir, code, err)
			}
		}
		code, err = d.upload(
			upFile{name: u + "/Snapshot/ab/ab01", data: []byte("hello")},
			upFile{name: u + "/Snapshot/ab/ab02", data: big},
			upFile{name: u + "/Snapshot/cd/cd01", data: nil},
			upFile{name: u + "/Snapshot/cd/cd02", data: []byte("partial"), remoteErr: "gone"},
			upFile{name: u + "/Snapshot/Status.plist", data: statusPlist(d.t, "finished")},
		)
		if err != nil || code != 0 {
			return fmt.Errorf("upload %v %v", code, err)
		}
		if code, extra, err := d.simple(devicelink.ContentsOfDirectory, u+"/Snapshot/ab"); err != nil || code != 0 {
			return fmt.Errorf("contents %v %v", code, err)
		} else if m, _ := extra.(map[string]any); len(m) != 2 {
			return fmt.Errorf("contents listing %v", extra)
		}
		if code, _, err := d.simple(devicelink.CopyItem, u+"/Snapshot/ab/ab01", u+"/Snapshot/ab/copy"); err != nil || code != 0 {
			return fmt.Errorf("copy %v %v", code, err)
		}
		moves := map[string]any{
			u + "/Snapshot/ab":           u + "/ab",
			u + "/Snapshot/cd":           u + "/cd",
			u + "/Snapshot/Status.plist": u + "/Status.plist",
		}
		if code, _, err := d.simple(devicelink.MoveItems, moves, map[string]any{}, 90.0); err != nil || code != 0 {
			return fmt.Errorf("move %v %v", code, err)
		}
		if code, _, err := d.simple(devicelink.RemoveItems, []any{u + "/Snapshot", u + "/nothing"}, map[string]any{}, 95.0); err != nil || code != 0 {
			return fmt.Errorf("remove %v %v", code, err)
		}
		if code, _, err := d.simple("DLMessageSomethingNew", "x"); err != nil || code != -1 {
			return fmt.Errorf("unknown %v %v", code, err)
		}
		files, code, err = d.download(u + "/ab/ab02")
		if err != nil || code != 0 || !bytes.Equal(files[u+"/ab/ab02"], big) {
			return fmt.Errorf("download back %v %v", code, err)
		}
		return d.finish(0, "")
	})
	res, evs, err := mustBackup(t, c, root, false)
	if werr := wait(); werr != nil {
		t.Fatalf("device: %v", werr)
	}
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	want := map[string][]byte{"ab/ab01": []byte("hello"), "ab/ab02": big, "cd/cd01": {}, "ab/copy": []byte("hello")}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(root, u, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", name, len(got), err, len(data))
		}
	}
	if _, err := os.Stat(filepath.Join(root, u, "cd", "cd02")); !os.IsNotExist(err) {
		t.Errorf("ERROR_REMOTE file exists: %v", err)
	}
	assertNoTemps(t, root)
	if res.FilesReceived != 4 || res.BytesReceived != int64(5+len(big)+len("partial")+len(statusPlist(t, "finished"))) {
		t.Errorf("result %+v", res)
	}
	if res.SnapshotState != "finished" || !res.FullBackup {
		t.Errorf("status %+v", res)
	}
	last := evs[len(evs)-1]
	if last.Kind != EventFinished || last.FilesDone != 4 || last.BytesExpected == 0 {
		t.Errorf("last event %+v", last)
	}
	var phases []Phase
	for _, e := range evs {
		if e.Kind == EventPhase {
			phases = append(phases, e.Phase)
		}
	}
	if fmt.Sprint(phases) != fmt.Sprint([]Phase{PhasePreparing, PhaseTransferring, PhaseFinishing}) {
		t.Errorf("phases %v", phases)
	}
}

func assertNoTemps(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(de.Name(), ".snapback-") {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}

func TestBackupForceFull(t *testing.T) {
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		req, err := d.expectBackup()
		if err != nil {
			return err
		}
		opts, _ := req["Options"].(map[string]any)
		if opts["ForceFullBackup"] != true {
			return fmt.Errorf("options %v", req["Options"])
		}
		return d.finish(208, "Device locked (MBErrorDomain/208)")
	})
	_, _, err := mustBackup(t, c, t.TempDir(), true)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, failure.DeviceLocked) {
		t.Fatalf("err = %v; want failure.DeviceLocked", err)
	}
}

func TestBackupDeviceErrors(t *testing.T) {
	cases := []struct {
		code int64
		want error
	}{
		{208, failure.DeviceLocked}, {105, failure.NoSpace}, {207, failure.WrongPassword}, {212, failure.SetupNotFinished},
		{104, failure.DeviceStopped}, {-4, failure.DeviceError}, {100, failure.DeviceError},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			c, d := pair(t)
			wait := d.run(func(d *fakeDevice) error {
				if _, err := d.expectBackup(); err != nil {
					return err
				}
				// pymobiledevice3 style: negative numbers as uint64 two's complement.
				dict := map[string]any{"ErrorCode": uint64(tc.code), "ErrorDescription": "desc"}
				return d.send(devicelink.ProcessMessage, dict)
			})
			_, evs, err := mustBackup(t, c, t.TempDir(), false)
			if werr := wait(); werr != nil {
				t.Fatal(werr)
			}
			var e *failure.Error
			if !errors.Is(err, tc.want) || !errors.As(err, &e) || e.DeviceCode != tc.code {
				t.Fatalf("err = %#v; want %v with code %d", err, tc.want, tc.code)
			}
			if !strings.Contains(err.Error(), "desc") || e.Remedy() == "" {
				t.Errorf("message %q lacks detail or remedy", err)
			}
			if last := evs[len(evs)-1]; last.Kind != EventFailed || last.Err != e {
				t.Errorf("last event %+v", last)
			}
		})
	}
}

func TestBackupNotFinished(t *testing.T) {
	for _, state := range []string{"", "uploading"} {
		root := t.TempDir()
		c, d := pair(t)
		wait := d.run(func(d *fakeDevice) error {
			if _, err := d.expectBackup(); err != nil {
				return err
			}
			if state != "" {
				d.simple(devicelink.CreateDirectory, testUDID)
				d.upload(upFile{name: testUDID + "/Status.plist", data: statusPlist(t, state)})
			}
			return d.finish(0, "")
		})
		_, _, err := mustBackup(t, c, root, false)
		if werr := wait(); werr != nil {
			t.Fatal(werr)
		}
		if !errors.Is(err, failure.Incomplete) {
			t.Errorf("state %q: err = %v; want failure.Incomplete", state, err)
		}
	}
}

func TestBackupLinkLost(t *testing.T) {
	root := t.TempDir()
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		if _, err := d.expectBackup(); err != nil {
			return err
		}
		d.simple(devicelink.CreateDirectory, testUDID+"/Snapshot")
		d.send(devicelink.UploadFiles, map[string]any{}, 1.0, uint64(100))
		d.dl.WriteName("x")
		d.dl.WriteName(testUDID + "/Snapshot/f")
		d.dl.WriteBlock(devicelink.CodeFileData, []byte("half of it"))
		d.dl.Flush()
		return d.conn.Close()
	})
	_, _, err := mustBackup(t, c, root, false)
	if werr := wait(); werr != nil {
		t.Fatal(werr)
	}
	var e *failure.Error
	if !errors.Is(err, failure.LinkLost) || !errors.As(err, &e) || !e.Retryable() {
		t.Fatalf("err = %v; want retryable failure.LinkLost", err)
	}
	assertNoTemps(t, root)
	if _, err := os.Stat(filepath.Join(root, testUDID, "Snapshot", "f")); !os.IsNotExist(err) {
		t.Errorf("half file visible: %v", err)
	}
}

func TestBackupDeviceDisconnects(t *testing.T) {
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		return d.send(devicelink.Disconnect, devicelink.EmptyParameter)
	})
	_, _, err := mustBackup(t, c, t.TempDir(), false)
	wait()
	if !errors.Is(err, failure.LinkLost) {
		t.Fatalf("err = %v; want failure.LinkLost", err)
	}
}

func TestBackupCancel(t *testing.T) {
	c, d := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	wait := d.run(func(d *fakeDevice) error {
		if _, err := d.expectBackup(); err != nil {
			return err
		}
		cancel() // the device "scans" forever; the host gives up
		drain(d.conn)
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.Backup(ctx, BackupOptions{Root: t.TempDir(), UDID: testUDID})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, failure.Cancelled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want failure.Cancelled wrapping context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Backup did not return after cancel")
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// TestHostilePaths: a device that tries to escape the backup folder gets errors for every
// attempt and no byte outside <root>/<UDID> is created, changed or read.
func TestHostilePaths(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	u := testUDID
	os.MkdirAll(filepath.Join(root, u), 0o755)
	os.WriteFile(filepath.Join(base, "victim"), []byte("original"), 0o644)
	os.MkdirAll(filepath.Join(root, "OTHER"), 0o755)
	os.WriteFile(filepath.Join(root, "OTHER", "f"), []byte("other device"), 0o644)
	os.Symlink(base, filepath.Join(root, u, "esc"))
	before := hashTree(t, base, filepath.Join(root, u))

	hostile := []string{"../victim", u + "/../../victim", "/etc/passwd", base + "/victim", "OTHER/f",
		u + "/esc/victim", u + `\..\..\victim`, u + "/./x", u + "//x", u + "/x\x00"}
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		if _, err := d.expectBackup(); err != nil {
			return err
		}
		var ups []upFile
		for _, p := range hostile {
			ups = append(ups, upFile{name: p, data: []byte("pwned")})
		}
		if code, err := d.upload(ups...); err != nil || code == 0 {
			return fmt.Errorf("hostile upload status %v %v", code, err)
		}
		files, code, err := d.download(hostile...)
		if err != nil || code != devicelink.ErrCodeMultiStatus {
			return fmt.Errorf("hostile download %v %v", code, err)
		}
		for p, b := range files {
			if b != nil {
				return fmt.Errorf("read %q outside", p)
			}
		}
		for _, p := range hostile {
			for _, m := range [][]any{
				{devicelink.CreateDirectory, p},
				{devicelink.RemoveItems, []any{p}, map[string]any{}, 1.0},
				{devicelink.MoveItems, map[string]any{p: u + "/moved"}, map[string]any{}, 1.0},
				{devicelink.MoveItems, map[string]any{u + "/esc": p}, map[string]any{}, 1.0},
				{devicelink.CopyItem, p, u + "/copied"},
				{devicelink.CopyItem, u + "/esc", p},
				{devicelink.ContentsOfDirectory, p},
			} {
				code, extra, err := d.simple(m...)
				if err != nil {
					return err
				}
				if code == 0 && m[0] != devicelink.RemoveItems {
					return fmt.Errorf("%v accepted: %v", m, extra)
				}
			}
		}
		return d.finish(0, "")
	})
	_, _, err := mustBackup(t, c, root, false)
	if werr := wait(); werr != nil {
		t.Fatal(werr)
	}
	if !errors.Is(err, failure.Incomplete) {
		t.Errorf("err = %v; want failure.Incomplete (no Status.plist)", err)
	}
	after := hashTree(t, base, filepath.Join(root, u))
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("outside changed:\nbefore %v\nafter  %v", before, after)
	}
}

// hashTree maps every path under base (except skip) to its type, size and content.
func hashTree(t *testing.T, base, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(base, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, _ := os.Lstat(p)
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			v += ":" + string(b)
		}
		out[p] = v + ":" + fi.ModTime().String()
		return nil
	})
	return out
}

// TestUploadKeepsHardLinks: a file hard-linked into an earlier snapshot keeps its bytes
// when the device uploads a new version and moves it over the old one.
func TestUploadKeepsHardLinks(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	os.MkdirAll(filepath.Join(root, u, "ab"), 0o755)
	live := filepath.Join(root, u, "ab", "ab01")
	os.WriteFile(live, []byte("version 1"), 0o644)
	snap := filepath.Join(t.TempDir(), "snap-ab01")
	if err := os.Link(live, snap); err != nil {
		t.Fatal(err)
	}
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		d.simple(devicelink.CreateDirectory, u+"/Snapshot/ab")
		d.upload(upFile{name: u + "/ab/ab01", data: []byte("version 2 direct")})
		d.upload(upFile{name: u + "/Snapshot/ab/ab01", data: []byte("version 3")},
			upFile{name: u + "/Snapshot/Status.plist", data: statusPlist(t, "finished")})
		d.simple(devicelink.CopyItem, u+"/Snapshot/ab/ab01", u+"/ab/ab01")
		d.simple(devicelink.MoveItems, map[string]any{u + "/Snapshot/ab/ab01": u + "/ab/ab01", u + "/Snapshot/Status.plist": u + "/Status.plist"}, map[string]any{}, 1.0)
		return d.finish(0, "")
	})
	if _, _, err := mustBackup(t, c, root, false); err != nil {
		t.Fatal(err)
	}
	wait()
	if b, _ := os.ReadFile(snap); string(b) != "version 1" {
		t.Errorf("snapshot link now holds %q; want %q", b, "version 1")
	}
	if b, _ := os.ReadFile(live); string(b) != "version 3" {
		t.Errorf("live file holds %q; want %q", b, "version 3")
	}
}

// TestSnapshotUploadOverHardLinkKeepsIt: uploads into <UDID>/Snapshot/ are created under
// their own name (no temp file); uploading over a name that is hard-linked elsewhere makes a
// new inode, so the other link keeps its bytes.
func TestSnapshotUploadOverHardLinkKeepsIt(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	c, d := pair(t)
	var linkErr error
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		d.simple(devicelink.CreateDirectory, u+"/Snapshot/ab")
		d.upload(upFile{name: u + "/Snapshot/ab/ab01", data: []byte("one")})
		linkErr = os.Link(filepath.Join(root, u, "Snapshot", "ab", "ab01"), elsewhere)
		d.upload(upFile{name: u + "/Snapshot/ab/ab01", data: []byte("two")},
			upFile{name: u + "/Status.plist", data: statusPlist(t, "finished")})
		return d.finish(0, "")
	})
	if _, _, err := mustBackup(t, c, root, false); err != nil {
		t.Fatal(err)
	}
	wait()
	if linkErr != nil {
		t.Fatal(linkErr)
	}
	if b, _ := os.ReadFile(elsewhere); string(b) != "one" {
		t.Errorf("the other hard link now holds %q; want %q", b, "one")
	}
	if b, _ := os.ReadFile(filepath.Join(root, u, "Snapshot", "ab", "ab01")); string(b) != "two" {
		t.Errorf("the upload holds %q; want %q", b, "two")
	}
}

// TestUploadWriteFailureKeepsSync: a file that cannot be created (parent missing) is
// reported in the status and the next files of the same batch still arrive intact.
func TestUploadWriteFailureKeepsSync(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	c, d := pair(t)
	var code int64
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		d.simple(devicelink.CreateDirectory, u)
		code, _ = d.upload(upFile{name: u + "/missing/f", data: bytes.Repeat([]byte("x"), 70000)},
			upFile{name: u + "/Status.plist", data: statusPlist(t, "finished")})
		return d.finish(0, "")
	})
	if _, _, err := mustBackup(t, c, root, false); err != nil {
		t.Fatal(err)
	}
	wait()
	if code != devicelink.ErrCodeNoEntry {
		t.Errorf("status = %d; want %d", code, devicelink.ErrCodeNoEntry)
	}
}

func TestChannelSinkNeverBlocks(t *testing.T) {
	ch := make(chan Event, 2)
	sink := ChannelSink(ch)
	for i := 0; i < 10; i++ {
		sink(Event{Kind: EventProgress})
	}
	sink(Event{Kind: EventFinished})
	<-ch
	if e := <-ch; e.Kind != EventFinished {
		t.Errorf("last queued = %v; want finished", e.Kind)
	}
	ChannelSink(make(chan Event))(Event{Kind: EventFailed}) // unbuffered, nobody reading: returns
}

func TestErrorClassification(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if e := Classify(ctx, errors.New("x")); e.Class != failure.Cancelled {
		t.Errorf("cancelled ctx: %v", e.Class)
	}
	if e := Classify(context.Background(), fmt.Errorf("read: %w", os.ErrClosed)); e.Class != failure.LocalIO && e.Class != failure.Unknown {
		t.Errorf("closed file: %v", e.Class)
	}
	if e := Classify(context.Background(), fmt.Errorf("read: %w", failure.NoSpace)); e.Class != failure.NoSpace {
		t.Errorf("sentinel passes through: %v", e)
	}
	e := DeviceResultError(208, "Device locked")
	if errors.Is(e, failure.NoSpace) || !errors.Is(e, failure.DeviceLocked) {
		t.Error("Is by code")
	}
	if !strings.Contains(e.Error(), "passcode") || !strings.Contains(e.Error(), "208") {
		t.Errorf("message %q", e.Error())
	}
}

// TestRemoveRecreateUpload: removing a folder and creating it again in later messages works
// (the per-message directory cache never hides a removal).
func TestRemoveRecreateUpload(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		for round := 0; round < 2; round++ {
			if code, _, err := d.simple(devicelink.CreateDirectory, u+"/Snapshot/ab"); err != nil || code != 0 {
				return fmt.Errorf("mkdir round %d: %d %v", round, code, err)
			}
			if code, err := d.upload(upFile{name: u + "/Snapshot/ab/f", data: []byte("x")}); err != nil || code != 0 {
				return fmt.Errorf("upload round %d: %d %v", round, code, err)
			}
			if code, _, err := d.simple(devicelink.RemoveItems, []any{u + "/Snapshot"}, map[string]any{}, 1.0); err != nil || code != 0 {
				return fmt.Errorf("remove round %d: %d %v", round, code, err)
			}
		}
		return d.finish(0, "")
	})
	mustBackup(t, c, root, false)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// TestUploadOverSymlinkReplacesLink: a symlink planted where a file is uploaded is replaced
// by the new file; the link's target is never written.
func TestUploadOverSymlinkReplacesLink(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	outside := filepath.Join(t.TempDir(), "target")
	os.WriteFile(outside, []byte("outside"), 0o644)
	os.MkdirAll(filepath.Join(root, u), 0o755)
	os.Symlink(outside, filepath.Join(root, u, "Status.plist"))
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		if code, err := d.upload(upFile{name: u + "/Status.plist", data: statusPlist(t, "finished")}); code != 0 || err != nil {
			return fmt.Errorf("upload %d %v", code, err)
		}
		return d.finish(0, "")
	})
	if _, _, err := mustBackup(t, c, root, false); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "outside" {
		t.Errorf("symlink target written: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(root, u, "Status.plist")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("Status.plist is not a regular file: %v %v", fi, err)
	}
}

// TestFailureAfterMovesIsNotComplete: when a run fails after the device started moving files
// into place, the folder's old "finished" Status.plist no longer claims completeness.
func TestFailureAfterMovesIsNotComplete(t *testing.T) {
	for _, tc := range []struct {
		name   string
		move   bool
		wantOK bool // previous Status.plist still in place
	}{{"fails before moving", false, true}, {"fails after moving", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			u := testUDID
			os.MkdirAll(filepath.Join(root, u, "ab"), 0o755)
			os.WriteFile(filepath.Join(root, u, "Status.plist"), statusPlist(t, "finished"), 0o644)
			c, d := pair(t)
			wait := d.run(func(d *fakeDevice) error {
				d.expectBackup()
				d.simple(devicelink.CreateDirectory, u+"/Snapshot/ab")
				d.upload(upFile{name: u + "/Snapshot/ab/f", data: []byte("new")})
				if tc.move {
					d.simple(devicelink.MoveItems, map[string]any{u + "/Snapshot/ab/f": u + "/ab/f"}, map[string]any{}, 1.0)
				}
				return d.finish(104, "Error removing snapshot directory")
			})
			_, _, err := mustBackup(t, c, root, false)
			wait()
			if !errors.Is(err, failure.DeviceStopped) {
				t.Fatalf("err = %v", err)
			}
			_, statErr := os.Stat(filepath.Join(root, u, "Status.plist"))
			if (statErr == nil) != tc.wantOK {
				t.Errorf("Status.plist present = %v; want %v", statErr == nil, tc.wantOK)
			}
		})
	}
}
