package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/device"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/devicesim/simtest"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
	"snapback/internal/testenv"
)

// rig is a simulated iPhone behind a real usbmuxd socket; go-ios (inside internal/device)
// talks to it exactly as to a real device.
type rig struct {
	sim   *devicesim.Sim
	dev   *devicesim.Device
	agent *backupsim.Device
	udid  string
	// cancelWindow is Request.PasscodeCancelWindow; 0 here turns the distinction off,
	// because these tests scale the device's passcode timeout down to milliseconds.
	cancelWindow time.Duration
}

func newRig(t testing.TB, o backupsim.Options, cfg devicesim.DeviceConfig) *rig {
	t.Helper()
	sim := simtest.Start(t)
	id := cfg.Identity
	if id.UDID == "" {
		id = devicesim.DefaultIdentity(0)
	}
	if id.ProductVersion == "" {
		id.ProductVersion = "17.5.1"
	}
	if o.Files == 0 {
		o.Files = 150
	}
	if o.TotalSize == 0 {
		o.TotalSize = 4 << 20
	}
	cfg.Identity = id
	d, agent := simtest.AddDevice(t, sim, cfg, o)
	return &rig{sim: sim, dev: d, agent: agent, udid: id.UDID}
}

// events collects engine events (the callback is serialised by the engine).
type events struct {
	mu  sync.Mutex
	evs []mobilebackup2.Event
}

func (e *events) add(ev mobilebackup2.Event) { e.mu.Lock(); e.evs = append(e.evs, ev); e.mu.Unlock() }

func (e *events) all() []mobilebackup2.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]mobilebackup2.Event(nil), e.evs...)
}

func (r *rig) backup(t testing.TB, root string, full bool, ev *events) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := Request{UDID: r.udid, Root: root, Full: full, LockRetry: 10 * time.Millisecond, PasscodeCancelWindow: -1}
	if r.cancelWindow > 0 {
		req.PasscodeCancelWindow = r.cancelWindow
	}
	if ev != nil {
		req.Events = ev.add
	}
	return Backup(ctx, req)
}

// checkFolder proves root/<UDID> is the device's content: Manifest.db lists exactly the
// device's files and every regular file's blob is byte-equal to the device's bytes.
func checkFolder(t *testing.T, r *rig, root string) {
	t.Helper()
	dir := filepath.Join(root, r.udid)
	st, err := backupfmt.ReadStatus(filepath.Join(dir, "Status.plist"))
	if err != nil || st.SnapshotState != "finished" {
		t.Fatalf("Status.plist: %+v, %v", st, err)
	}
	if _, err := backupfmt.ReadInfo(filepath.Join(dir, "Info.plist")); err != nil {
		t.Errorf("Info.plist: %v", err)
	}
	db, err := backupfmt.OpenManifestDB(filepath.Join(dir, "Manifest.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := map[string]backupfmt.Record{}
	if err := db.Each(context.Background(), func(rec backupfmt.Record) error { rows[rec.FileID] = rec; return nil }); err != nil {
		t.Fatal(err)
	}
	files := r.agent.Files()
	if len(rows) != len(files) {
		t.Errorf("Manifest.db has %d rows; device has %d files", len(rows), len(files))
	}
	for _, f := range files {
		rec, ok := rows[f.FileID]
		if !ok || rec.Domain != f.Domain || rec.RelativePath != f.RelativePath || rec.Flags != f.Flags {
			t.Errorf("row for %s-%s: %+v (present %v)", f.Domain, f.RelativePath, rec, ok)
			continue
		}
		if f.Flags != backupfmt.FlagFile {
			continue
		}
		want, err := r.agent.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.Open(backupfmt.BlobPath(dir, f.FileID))
		if err != nil {
			t.Errorf("blob of %s: %v", f.RelativePath, err)
			want.Close()
			continue
		}
		if !sameReader(got, want) {
			t.Errorf("blob of %s-%s differs from the device's bytes", f.Domain, f.RelativePath)
		}
		got.Close()
		want.Close()
	}
	// Nothing else: no Snapshot folder, no temp files.
	filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err == nil && (strings.HasPrefix(de.Name(), ".snapback-") || de.Name() == "Snapshot") {
			t.Errorf("leftover %s", p)
		}
		return nil
	})
}

func sameReader(a, b io.Reader) bool {
	ha, hb := sha256.New(), sha256.New()
	io.Copy(ha, a)
	io.Copy(hb, b)
	return bytes.Equal(ha.Sum(nil), hb.Sum(nil))
}

func TestFullThenIncremental(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 7}, devicesim.DeviceConfig{})
	root := t.TempDir()
	var ev events
	res, err := r.backup(t, root, false, &ev)
	if err != nil {
		t.Fatalf("full backup: %v", err)
	}
	c1 := r.agent.Counters()
	if !c1.LastFull || res.Backup.FilesReceived == 0 {
		t.Errorf("first backup: counters %+v result %+v", c1, res.Backup)
	}
	checkFolder(t, r, root)
	evs := ev.all()
	if last := evs[len(evs)-1]; last.Kind != mobilebackup2.EventFinished || last.BytesDone == 0 {
		t.Errorf("last event %+v", last)
	}
	if evs[0].Kind != mobilebackup2.EventPhase || evs[0].Phase != mobilebackup2.PhaseConnecting {
		t.Errorf("first event %+v", evs[0])
	}

	// Hard links into the folder stand for an earlier snapshot: they must keep their bytes.
	snap := t.TempDir()
	links := map[string][]byte{}
	for _, f := range r.agent.Files() {
		if f.Flags != backupfmt.FlagFile {
			continue
		}
		src := backupfmt.BlobPath(filepath.Join(root, r.udid), f.FileID)
		dst := filepath.Join(snap, f.FileID)
		if err := os.Link(src, dst); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(dst)
		links[dst] = b
	}
	for _, name := range []string{"Manifest.db", "Status.plist", "Manifest.plist", "Info.plist"} {
		src := filepath.Join(root, r.udid, name)
		dst := filepath.Join(snap, name)
		os.Link(src, dst)
		b, _ := os.ReadFile(dst)
		links[dst] = b
	}

	m := r.agent.Mutate(5)
	if m.Modified+m.Added+m.Deleted == 0 {
		t.Fatalf("mutation changed nothing: %+v", m)
	}
	if _, err := r.backup(t, root, false, nil); err != nil {
		t.Fatalf("incremental backup: %v", err)
	}
	c2 := r.agent.Counters()
	if c2.LastFull {
		t.Error("second backup was full; want incremental")
	}
	if c2.LastFilesUploaded > int64(m.Modified+m.Added) || c2.LastFilesUploaded == 0 {
		t.Errorf("incremental uploaded %d files; mutation added %d, modified %d", c2.LastFilesUploaded, m.Added, m.Modified)
	}
	checkFolder(t, r, root)
	for p, b := range links {
		got, _ := os.ReadFile(p)
		if !bytes.Equal(got, b) {
			t.Errorf("hard link %s changed", filepath.Base(p))
		}
	}

	// --full forces a full backup.
	if _, err := r.backup(t, root, true, nil); err != nil {
		t.Fatalf("forced full: %v", err)
	}
	if !r.agent.Counters().LastFull {
		t.Error("forced backup was not full")
	}
	checkFolder(t, r, root)
}

func TestPasscodeEventBeforeData(t *testing.T) {
	yes := true
	r := newRig(t, backupsim.Options{PasscodeRequired: &yes, PasscodeDelay: 300 * time.Millisecond, Files: 40},
		devicesim.DeviceConfig{Identity: withVersion("17.0")})
	var ev events
	if _, err := r.backup(t, t.TempDir(), false, &ev); err != nil {
		t.Fatal(err)
	}
	requested, dismissed := -1, -1
	firstData := -1
	for i, e := range ev.all() {
		switch {
		case e.Kind == mobilebackup2.EventPasscodeRequested && requested < 0:
			requested = i
		case e.Kind == mobilebackup2.EventPasscodeDismissed && dismissed < 0:
			dismissed = i
		case e.BytesDone > 0 && firstData < 0:
			firstData = i
		}
	}
	if requested < 0 || dismissed < requested || firstData < requested {
		t.Errorf("passcode requested at %d, dismissed at %d, first data at %d", requested, dismissed, firstData)
	}
}

func withVersion(v string) devicesim.Identity {
	id := devicesim.DefaultIdentity(0)
	id.ProductVersion = v
	return id
}

func TestPasscodeTimeout(t *testing.T) {
	yes := true
	r := newRig(t, backupsim.Options{PasscodeRequired: &yes, PasscodeDelay: -1, PasscodeTimeout: 300 * time.Millisecond, Files: 20},
		devicesim.DeviceConfig{Identity: withVersion("16.1")})
	var ev events
	root := t.TempDir()
	_, err := r.backup(t, root, false, &ev)
	if !errors.Is(err, failure.DeviceLocked) {
		t.Fatalf("err = %v; want ErrDeviceLocked", err)
	}
	var e *failure.Error
	errors.As(err, &e)
	if e.DeviceCode != 208 || !strings.Contains(err.Error(), "passcode") {
		t.Errorf("error %v (code %d)", err, e.DeviceCode)
	}
	evs := ev.all()
	sawRequest := false
	for _, x := range evs {
		sawRequest = sawRequest || x.Kind == mobilebackup2.EventPasscodeRequested
	}
	if !sawRequest || evs[len(evs)-1].Kind != mobilebackup2.EventFailed {
		t.Errorf("events: passcode requested %v, last %+v", sawRequest, evs[len(evs)-1])
	}
	assertNotComplete(t, root, r.udid)
}

// assertNotComplete: a failed run must not leave a folder that looks like a finished backup.
func assertNotComplete(t *testing.T, root, udid string) {
	t.Helper()
	st, err := backupfmt.ReadStatus(filepath.Join(root, udid, "Status.plist"))
	if err == nil && st.SnapshotState == "finished" {
		if _, err := os.Stat(filepath.Join(root, udid, "Manifest.db")); err == nil {
			t.Errorf("failed run left a complete-looking backup")
		}
	}
}

func TestInjectedDeviceErrors(t *testing.T) {
	cases := []struct {
		code int
		want error
	}{
		{104, failure.DeviceStopped},
		{105, failure.NoSpace},
		{212, failure.SetupNotFinished},
		{208, failure.DeviceLocked},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			r := newRig(t, backupsim.Options{FailCode: tc.code, Files: 30, PurgeTimeout: time.Second}, devicesim.DeviceConfig{})
			root := t.TempDir()
			_, err := r.backup(t, root, false, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v; want %v", err, tc.want)
			}
			assertNotComplete(t, root, r.udid)
		})
	}
}

func TestLinkDrop(t *testing.T) {
	r := newRig(t, backupsim.Options{Files: 80}, devicesim.DeviceConfig{DropBackupAfter: 400_000})
	root := t.TempDir()
	_, err := r.backup(t, root, false, nil)
	var e *failure.Error
	if !errors.Is(err, failure.LinkLost) || !errors.As(err, &e) || !e.Retryable() {
		t.Fatalf("err = %v; want retryable ErrLinkLost", err)
	}
	assertNotComplete(t, root, r.udid)
	// The next run (link back) succeeds into the same folder.
	r.dev.SetDropBackupAfter(0)
	if _, err := r.backup(t, root, false, nil); err != nil {
		t.Fatalf("backup after drop: %v", err)
	}
	checkFolder(t, r, root)
}

func TestDeviceBusy(t *testing.T) {
	r := newRig(t, backupsim.Options{Files: 10}, devicesim.DeviceConfig{})
	// Another host holds the sync lock: take it through a second AFC client.
	ctx := context.Background()
	other := holdLock(t, ctx)
	defer other()
	_, err := Backup(ctx, Request{UDID: r.udid, Root: t.TempDir(), LockAttempts: 3, LockRetry: time.Millisecond})
	if !errors.Is(err, failure.DeviceBusy) {
		t.Fatalf("err = %v; want ErrDeviceBusy", err)
	}
}

func TestNotConnected(t *testing.T) {
	newRig(t, backupsim.Options{Files: 10}, devicesim.DeviceConfig{})
	_, err := Backup(context.Background(), Request{UDID: "00008110-0000000000000BAD", Root: t.TempDir()})
	if !errors.Is(err, failure.NotConnected) {
		t.Fatalf("err = %v; want ErrNotConnected", err)
	}
}

func TestCancel(t *testing.T) {
	yes := true
	r := newRig(t, backupsim.Options{PasscodeRequired: &yes, PasscodeDelay: -1, Files: 10}, devicesim.DeviceConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	var ev events
	done := make(chan error, 1)
	go func() {
		_, err := Backup(ctx, Request{UDID: r.udid, Root: t.TempDir(), Events: func(e mobilebackup2.Event) {
			ev.add(e)
			if e.Kind == mobilebackup2.EventPasscodeRequested {
				cancel()
			}
		}})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, failure.Cancelled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want ErrCancelled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Backup did not return after cancel")
	}
}

func TestHostileDevice(t *testing.T) {
	r := newRig(t, backupsim.Options{Hostile: true, Files: 40}, devicesim.DeviceConfig{})
	base := t.TempDir()
	root := filepath.Join(base, "backups")
	os.MkdirAll(filepath.Join(root, r.udid), 0o755) // so that only its own subtree may change
	os.WriteFile(filepath.Join(base, "victim.txt"), []byte("do not touch"), 0o644)
	os.MkdirAll(filepath.Join(root, "OTHER-DEVICE"), 0o755)
	os.WriteFile(filepath.Join(root, "OTHER-DEVICE", "Info.plist"), []byte("other"), 0o644)
	before := treeHash(t, base, filepath.Join(root, r.udid))

	_, err := r.backup(t, root, false, nil)
	c := r.agent.Counters()
	t.Logf("hostile run: err=%v attempts=%d refused=%d", err, c.HostileAttempts, c.HostileRefused)
	if c.HostileAttempts == 0 || c.HostileRefused != c.HostileAttempts {
		t.Errorf("hostile attempts %d, refused %d; want all refused", c.HostileAttempts, c.HostileRefused)
	}
	after := treeHash(t, base, filepath.Join(root, r.udid))
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("files outside the backup folder changed:\nbefore %v\nafter  %v", before, after)
	}
}

// treeHash maps every entry under base except skip to mode, size, mtime and content hash.
func treeHash(t *testing.T, base, skip string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(base, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, _ := os.Lstat(p)
		line := fmt.Sprintf("%s %v %d %d", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out = append(out, line)
		return nil
	})
	sort.Strings(out)
	return out
}

// holdLock takes the device's sync lock through its own session, as another host would.
func holdLock(t *testing.T, ctx context.Context) func() {
	t.Helper()
	s, err := device.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.StartAFC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := a.LockSync(ctx, 1, device.SleepWait(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	return func() { l.Unlock(ctx); a.Close(); s.Close() }
}

func idevicebackup2(t *testing.T) string {
	t.Helper()
	return testenv.RequireTool(t, "idevicebackup2")
}

// TestSameAsIdevicebackup2: Snapback's folder and idevicebackup2's folder from the same
// simulated device hold the same Manifest.db rows and the same blobs.
func TestSameAsIdevicebackup2(t *testing.T) {
	bin := idevicebackup2(t)
	r := newRig(t, backupsim.Options{Seed: 11, Files: 120}, devicesim.DeviceConfig{})
	ours := t.TempDir()
	if _, err := r.backup(t, ours, true, nil); err != nil {
		t.Fatal(err)
	}
	theirs := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-u", r.udid, "backup", "--full", theirs).CombinedOutput()
	if err != nil {
		t.Fatalf("idevicebackup2: %v\n%s", err, out)
	}
	a, b := folderDigest(t, filepath.Join(ours, r.udid)), folderDigest(t, filepath.Join(theirs, r.udid))
	if len(a) == 0 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("folders differ:\nsnapback       %d entries\nidevicebackup2 %d entries", len(a), len(b))
		for k, v := range a {
			if b[k] != v {
				t.Errorf("  %s: ours %s theirs %s", k, v, b[k])
				break
			}
		}
	}
}

// folderDigest: Manifest.db rows (domain, path, flags) and blob hashes keyed by fileID.
func folderDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	db, err := backupfmt.OpenManifestDB(filepath.Join(dir, "Manifest.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]string{}
	db.Each(context.Background(), func(rec backupfmt.Record) error {
		v := fmt.Sprintf("%s|%s|%d", rec.Domain, rec.RelativePath, rec.Flags)
		if rec.Flags == backupfmt.FlagFile {
			b, err := os.ReadFile(backupfmt.BlobPath(dir, rec.FileID))
			if err != nil {
				v += "|missing"
			} else {
				v += fmt.Sprintf("|%x", sha256.Sum256(b))
			}
		}
		out[rec.FileID] = v
		return nil
	})
	return out
}

// TestCancelOnDevice: the user taps cancel on the device (syncCancelRequest) while the
// passcode sheet is up; the run ends with ErrCancelledOnDevice.
func TestCancelOnDevice(t *testing.T) {
	yes := true
	r := newRig(t, backupsim.Options{PasscodeRequired: &yes, PasscodeDelay: -1, Files: 10}, devicesim.DeviceConfig{})
	done := make(chan error, 1)
	go func() {
		_, err := Backup(context.Background(), Request{UDID: r.udid, Root: t.TempDir(), Events: func(e mobilebackup2.Event) {
			if e.Kind == mobilebackup2.EventPasscodeRequested {
				go r.dev.Post(device.NotifySyncCancel)
			}
		}})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, failure.CancelledOnDevice) {
			t.Fatalf("err = %v; want ErrCancelledOnDevice", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no return after cancel on the device")
	}
}

// TestWiFiOnly: a device reachable only over Wi-Fi is backed up through the same path.
func TestWiFiOnly(t *testing.T) {
	r := newRig(t, backupsim.Options{Files: 30}, devicesim.DeviceConfig{WiFi: true})
	root := t.TempDir()
	res, err := r.backup(t, root, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Device.Transport != device.WiFi {
		t.Errorf("transport %q; want wifi", res.Device.Transport)
	}
	checkFolder(t, r, root)
}
