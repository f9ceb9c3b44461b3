package devicesim_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/devicesim/simtest"
	"snapback/internal/testenv"
)

// These tests run Debian's idevicebackup2 (libimobiledevice 1.3.0) against the simulator:
// a third-party client that knows nothing of Snapback must back the simulated iPhone up,
// fully and then incrementally, and must see the device's errors the way real devices
// report them.

// needIdevicebackup2 returns the tool's path; missing, it skips locally and fails under
// CI=true (DESIGN.md §8: no silent skips in CI).
func needIdevicebackup2(t testing.TB) string {
	t.Helper()
	return testenv.RequireTool(t, "idevicebackup2")
}

// recorder keeps the notifications the backup agent posts, in order, with times.
type recorder struct {
	mu    sync.Mutex
	names []string
	times []time.Time
}

func (r *recorder) posted() ([]string, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...), append([]time.Time(nil), r.times...)
}

// tee forwards to the simulator's notifier and records.
type tee struct {
	next devicesim.Notifier
	rec  *recorder
}

func (n tee) Post(name string) {
	n.rec.mu.Lock()
	n.rec.names = append(n.rec.names, name)
	n.rec.times = append(n.rec.times, time.Now())
	n.rec.mu.Unlock()
	n.next.Post(name)
}

// recordingAgent is the backup agent with its notifications recorded.
type recordingAgent struct {
	*backupsim.Device
	rec *recorder
}

func (a recordingAgent) Serve(ctx context.Context, rw io.ReadWriter, n devicesim.Notifier) error {
	return a.Device.Serve(ctx, rw, tee{n, a.rec})
}

type rig struct {
	sim   *devicesim.Sim
	agent *backupsim.Device
	rec   *recorder
	udid  string
	bin   string
}

func newRig(t testing.TB, o backupsim.Options) *rig {
	t.Helper()
	bin := needIdevicebackup2(t)
	sim := simtest.Start(t)
	id := devicesim.DefaultIdentity(0)
	agent := simtest.NewAgent(t, id, o)
	rec := &recorder{}
	// *backupsim.Device implements devicesim.BackupService itself; the wrapper only records.
	var _ devicesim.BackupService = agent
	if _, err := sim.AddDevice(devicesim.DeviceConfig{Identity: id, Backup: recordingAgent{agent, rec}}); err != nil {
		t.Fatal(err)
	}
	return &rig{sim: sim, agent: agent, rec: rec, udid: id.UDID, bin: bin}
}

// backup runs `idevicebackup2 -u UDID backup [--full] DIR` and returns its output and exit
// code.
func (r *rig) backup(t testing.TB, dir string, extra ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{"-u", r.udid, "backup"}, extra...)
	cmd := exec.CommandContext(ctx, r.bin, append(args, dir)...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+r.sim.Addr())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("idevicebackup2: %v\n%s", err, out.String())
	return "", -1
}

// verifyFolder checks a backup folder the device wrote through a host: Manifest.db lists
// exactly the simulated files, every blob equals the simulated bytes, no stray blobs, no
// Snapshot, Status.plist finished; with hostInfo also the host's Info.plist.
// An encrypted backup is opened with password through backupcrypto.
func verifyFolder(t *testing.T, agent *backupsim.Device, dir string, hostInfo bool, password ...string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "Snapshot")); !os.IsNotExist(err) {
		t.Errorf("Snapshot folder left behind (%v)", err)
	}
	if st, err := backupfmt.ReadStatus(filepath.Join(dir, "Status.plist")); err != nil || st.SnapshotState != "finished" {
		t.Errorf("Status.plist = %+v, %v; want finished", st, err)
	}
	if _, err := backupfmt.ReadInfo(filepath.Join(dir, "Info.plist")); hostInfo && err != nil {
		t.Errorf("Info.plist written by idevicebackup2: %v", err)
	}
	want := map[string]backupsim.File{}
	regular := 0
	for _, f := range agent.Files() {
		want[f.FileID] = f
		if f.Flags == backupfmt.FlagFile {
			regular++
		}
	}
	m, err := backupfmt.ReadManifest(filepath.Join(dir, "Manifest.plist"))
	if err != nil || m.IsEncrypted != agent.WillEncrypt() {
		t.Fatalf("Manifest.plist = %+v, %v; want IsEncrypted %v", m, err, agent.WillEncrypt())
	}
	dbPath := filepath.Join(dir, "Manifest.db")
	var keys *backupcrypto.Keys
	if m.IsEncrypted {
		if len(password) == 0 {
			t.Fatal("encrypted backup and no password to verify it")
		}
		if keys, err = backupcrypto.Unlock(m.BackupKeyBag, []byte(password[0])); err != nil {
			t.Fatalf("unlock keybag: %v", err)
		}
		plain := filepath.Join(t.TempDir(), "Manifest.db")
		if err := keys.DecryptManifestDB(m.ManifestKey, dbPath, plain); err != nil {
			t.Fatalf("decrypt Manifest.db: %v", err)
		}
		dbPath = plain
	}
	db, err := backupfmt.OpenManifestDB(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := 0
	err = db.Each(context.Background(), func(r backupfmt.Record) error {
		rows++
		f, ok := want[r.FileID]
		if !ok {
			t.Errorf("Manifest.db lists %s %q, not on the device", r.Domain, r.RelativePath)
			return nil
		}
		if r.Domain != f.Domain || r.RelativePath != f.RelativePath || r.Flags != f.Flags || r.File.Size != f.Size || r.File.Target != f.Target {
			t.Errorf("row %+v; device has %+v", r, f)
		}
		if f.Flags != backupfmt.FlagFile {
			return nil
		}
		got, err := os.ReadFile(backupfmt.BlobPath(dir, r.FileID))
		if err != nil {
			t.Errorf("blob of %s %q: %v", r.Domain, r.RelativePath, err)
			return nil
		}
		if keys != nil {
			var plain bytes.Buffer
			if _, err := keys.DecryptFile(&plain, bytes.NewReader(got), r.File.EncryptionKey); err != nil {
				t.Errorf("decrypt blob of %s %q: %v", r.Domain, r.RelativePath, err)
				return nil
			}
			got = plain.Bytes()
		}
		rc, err := agent.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		exp, _ := io.ReadAll(rc)
		if !bytes.Equal(got, exp) {
			t.Errorf("blob of %s %q differs from the device's bytes (%d vs %d)", r.Domain, r.RelativePath, len(got), len(exp))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rows != len(want) {
		t.Errorf("Manifest.db has %d rows; device has %d entries", rows, len(want))
	}
	blobs := 0
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && backupfmt.ValidFileID(e.Name()) {
			blobs++
		}
		return nil
	})
	if blobs != regular {
		t.Errorf("folder holds %d blobs; device has %d regular files", blobs, regular)
	}
}

func changedRegular(before, after []backupsim.File) (changed, removed int) {
	old := map[string]backupsim.File{}
	for _, f := range before {
		old[f.FileID] = f
	}
	cur := map[string]bool{}
	for _, f := range after {
		cur[f.FileID] = true
		if o, ok := old[f.FileID]; f.Flags == backupfmt.FlagFile && (!ok || o.Size != f.Size || !o.ModTime.Equal(f.ModTime)) {
			changed++
		}
	}
	for _, f := range before {
		if f.Flags == backupfmt.FlagFile && !cur[f.FileID] {
			removed++
		}
	}
	return changed, removed
}

func TestIdevicebackup2FullThenIncremental(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 1, Files: 400, TotalSize: 16 << 20})
	root := t.TempDir()
	dir := filepath.Join(root, r.udid)

	out, code := r.backup(t, root)
	if code != 0 || !strings.Contains(out, "Backup Successful") {
		t.Fatalf("full backup: exit %d\n%s", code, out)
	}
	c := r.agent.Counters()
	regular := 0
	for _, f := range r.agent.Files() {
		if f.Flags == backupfmt.FlagFile {
			regular++
		}
	}
	if !c.LastFull || c.LastFilesUploaded != int64(regular) {
		t.Errorf("full backup counters %+v; want full with %d files", c, regular)
	}
	verifyFolder(t, r.agent, dir, true)

	before := r.agent.Files()
	sum := r.agent.Mutate(25)
	changed, removed := changedRegular(before, r.agent.Files())
	out, code = r.backup(t, root)
	if code != 0 || !strings.Contains(out, "Backup Successful") {
		t.Fatalf("incremental backup: exit %d\n%s", code, out)
	}
	c = r.agent.Counters()
	if c.LastFull || c.IncrementalBackups != 1 || c.LastFilesUploaded != int64(changed) || c.LastFilesRemoved != int64(removed) {
		t.Errorf("incremental after %+v: counters %+v; want %d uploaded, %d removed", sum, c, changed, removed)
	}
	if changed == 0 || int64(changed) >= c.FilesUploaded/2 {
		t.Errorf("incremental uploaded %d of %d files in total; want only the changed ones", changed, c.FilesUploaded)
	}
	verifyFolder(t, r.agent, dir, true)

	// --full forces a full backup although the folder is current.
	out, code = r.backup(t, root, "--full")
	if c = r.agent.Counters(); code != 0 || !c.LastFull || c.FullBackups != 2 {
		t.Errorf("--full: exit %d, counters %+v\n%s", code, c, out)
	}
	verifyFolder(t, r.agent, dir, true)
}

func TestIdevicebackup2Passcode(t *testing.T) {
	yes := true
	t.Run("entered", func(t *testing.T) {
		r := newRig(t, backupsim.Options{Files: 30, PasscodeRequired: &yes, PasscodeDelay: 300 * time.Millisecond})
		out, code := r.backup(t, t.TempDir())
		if code != 0 || !strings.Contains(out, "Backup Successful") {
			t.Fatalf("exit %d\n%s", code, out)
		}
		names, times := r.rec.posted()
		if !reflect.DeepEqual(names, []string{backupsim.NotifyPasscodePresented, backupsim.NotifyPasscodeDismissed}) {
			t.Fatalf("posted %v; want presented then dismissed", names)
		}
		if gap := times[1].Sub(times[0]); gap < 300*time.Millisecond {
			t.Errorf("passcode sheet shown for %v; want ≥ 300ms", gap)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		r := newRig(t, backupsim.Options{Files: 30, PasscodeRequired: &yes, PasscodeDelay: -1, PasscodeTimeout: 500 * time.Millisecond})
		out, code := r.backup(t, t.TempDir())
		if code == 0 || !strings.Contains(out, "ErrorCode 208: Device locked (MBErrorDomain/208)") || strings.Contains(out, "Backup Successful") {
			t.Errorf("exit %d; want ErrorCode 208\n%s", code, out)
		}
		if names, _ := r.rec.posted(); !reflect.DeepEqual(names, []string{backupsim.NotifyPasscodePresented, backupsim.NotifyPasscodeDismissed}) {
			t.Errorf("posted %v; want presented then dismissed", names)
		}
	})
}

func TestIdevicebackup2InjectedErrors(t *testing.T) {
	tests := []struct {
		name string
		opts backupsim.Options
		want string
	}{
		{"104", backupsim.Options{FailCode: 104}, "ErrorCode 104: Error removing snapshot directory"},
		{"105", backupsim.Options{FailCode: 105, PurgeTimeout: 500 * time.Millisecond}, "ErrorCode 105: Insufficient free disk space"},
		{"105 real shortfall", backupsim.Options{RequiredFreeSpace: 1 << 60, PurgeTimeout: 500 * time.Millisecond}, "ErrorCode 105: Insufficient free disk space"},
		{"212", backupsim.Options{FailCode: 212}, "ErrorCode 212: Unable to backup until Setup is finished"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Files = 30
			r := newRig(t, tt.opts)
			root := t.TempDir()
			out, code := r.backup(t, root)
			if code == 0 || !strings.Contains(out, tt.want) || strings.Contains(out, "Backup Successful") {
				t.Errorf("exit %d; want failure with %q\n%s", code, tt.want, out)
			}
			if c := r.agent.Counters(); c.FailedBackups != 1 || c.Backups != 0 {
				t.Errorf("counters %+v; want one failed backup", c)
			}
			if st, err := backupfmt.ReadStatus(filepath.Join(root, r.udid, "Status.plist")); err == nil && st.SnapshotState == "finished" {
				t.Errorf("a failed backup left a finished Status.plist")
			}
		})
	}
}

// BenchmarkIdevicebackup2Full measures a full backup of 256 MB in few large files by Debian's
// idevicebackup2 from the simulator (process start, handshakes and disk writes included):
// the baseline Snapback's own host should beat.
func BenchmarkIdevicebackup2Full(b *testing.B) {
	r := newRig(b, backupsim.Options{Seed: 3, Files: 100, TotalSize: 256 << 20, PasscodeRequired: new(bool)})
	var total int64
	for _, f := range r.agent.Files() {
		total += f.Size
	}
	b.SetBytes(total)
	for b.Loop() {
		out, code := r.backup(b, b.TempDir(), "--full")
		if code != 0 {
			b.Fatalf("exit %d\n%s", code, out)
		}
	}
}

// TestIdevicebackup2InfoAndList: the "useful mode" answers to Info and List reach the user
// through idevicebackup2's info and list commands.
func TestIdevicebackup2InfoAndList(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 8, Files: 40, PasscodeRequired: new(bool)})
	root := t.TempDir()
	if out, code := r.backup(t, root); code != 0 {
		t.Fatalf("backup: exit %d\n%s", code, out)
	}
	run := func(cmd string) string {
		t.Helper()
		c := exec.Command(r.bin, "-u", r.udid, cmd, root)
		c.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+r.sim.Addr())
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("idevicebackup2 %s: %v\n%s", cmd, err, out)
		}
		return string(out)
	}
	info := run("info")
	for _, want := range []string{"Unique Identifier: " + r.udid, "Files: 40", "Backups: 1", "Last Backup UUID: " + r.agent.Counters().LastBackupUUID} {
		if !strings.Contains(info, want) {
			t.Errorf("info output lacks %q:\n%s", want, info)
		}
	}
	list := run("list")
	if !strings.Contains(list, "Domain,RelativePath,Flags,Size,LastModified,FileID") {
		t.Errorf("list output has no CSV header:\n%s", list)
	}
	for _, f := range r.agent.Files() {
		if !strings.Contains(list, f.FileID) {
			t.Errorf("list output lacks %s %q", f.Domain, f.RelativePath)
		}
	}
}

// TestIdevicebackup2Restore: what idevicebackup2 backed up, it restores, and the device
// verifies every blob byte for byte before taking the content back.
func TestIdevicebackup2Restore(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 9, Files: 150, TotalSize: 4 << 20, PasscodeRequired: new(bool)})
	root := t.TempDir()
	if out, code := r.backup(t, root); code != 0 {
		t.Fatalf("backup: exit %d\n%s", code, out)
	}
	backedUp := r.agent.Files()
	r.agent.Mutate(40)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, skipApps := range []bool{true, false} {
		args := []string{"-u", r.udid, "restore", "--no-reboot"}
		if skipApps {
			args = append(args, "--skip-apps")
		}
		cmd := exec.CommandContext(ctx, r.bin, append(args, root)...)
		cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+r.sim.Addr())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Restore Successful") {
			t.Fatalf("restore (skip apps %v): %v\n%s", skipApps, err, out)
		}
		if got := r.agent.Files(); !reflect.DeepEqual(got, backedUp) {
			t.Errorf("device content after restore differs from the backup (%d vs %d entries)", len(got), len(backedUp))
		}
		r.agent.Mutate(10)
	}
	if c := r.agent.Counters(); c.Restores != 2 || c.FailedRestores != 0 {
		t.Errorf("counters %+v; want 2 restores", c)
	}
}

// TestIdevicebackup2Encrypted: an encrypting device (WillEncrypt true through lockdown) is
// backed up by idevicebackup2, fully then incrementally, and backupcrypto opens the result
// with the password: keybag, Manifest.db and every blob.
func TestIdevicebackup2Encrypted(t *testing.T) {
	const password = "correct horse"
	r := newRig(t, backupsim.Options{Seed: 12, Files: 200, TotalSize: 4 << 20, PasscodeRequired: new(bool), Password: password, KDFRounds: 1000})
	root := t.TempDir()
	out, code := r.backup(t, root)
	if code != 0 || !strings.Contains(out, "Backup will be encrypted") || !strings.Contains(out, "Backup Successful") {
		t.Fatalf("encrypted full backup: exit %d\n%s", code, out)
	}
	verifyFolder(t, r.agent, filepath.Join(root, r.udid), true, password)

	before := r.agent.Files()
	r.agent.Mutate(20)
	changed, _ := changedRegular(before, r.agent.Files())
	if out, code = r.backup(t, root); code != 0 || !strings.Contains(out, "Backup Successful") {
		t.Fatalf("encrypted incremental: exit %d\n%s", code, out)
	}
	if c := r.agent.Counters(); c.LastFull || c.LastFilesUploaded != int64(changed) {
		t.Errorf("encrypted incremental counters %+v; want %d files", c, changed)
	}
	verifyFolder(t, r.agent, filepath.Join(root, r.udid), true, password)
}
