package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"snapback/settings/settingstest"
	"strings"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/devicesim/simtest"
	"snapback/internal/engine"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/settings"
)

// restoreRig is a simulated iPhone with two committed backups in a store: the older one is
// a snapshot, and the device has changed since the latest.
type restoreRig struct {
	agent *backupsim.Device
	udid  string
	st    *store.Store
	older store.Snapshot
	want  []backupsim.File // the device's content when the older snapshot was taken
}

func newRestoreRig(t *testing.T, password string) *restoreRig {
	t.Helper()
	id := devicesim.DefaultIdentity(2)
	id.ProductVersion = "17.5.1"
	_, agent := simtest.AddDevice(t, simtest.Start(t), devicesim.DeviceConfig{Identity: id, USB: true, BatteryLevel: 90}, backupsim.Options{
		Files: 80, TotalSize: 2 << 20, Seed: 41, PasscodeRequired: new(bool), Password: password, KDFRounds: 1000,
	})
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &restoreRig{agent: agent, udid: id.UDID, st: st}
	backup := func() store.Snapshot {
		run, err := st.Begin(ctx, r.udid, store.BeginOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := engine.Backup(ctx, engine.Request{UDID: r.udid, Root: run.Root(), LockRetry: 10 * time.Millisecond}); err != nil {
			run.Abort()
			t.Fatal(err)
		}
		snap, err := run.Commit(ctx, store.CommitMeta{})
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	first := backup()
	r.want = agent.Files()
	agent.Mutate(30)
	backup()
	agent.Mutate(20)
	if r.older, err = st.Get(r.udid, first.ID); err != nil || r.older.Latest {
		t.Fatalf("older snapshot: %+v %v", r.older, err)
	}
	return r
}

// TestRestoreCommandOlderSnapshot: `snapback restore --snapshot ID` archives the latest
// backup first (pinned <UDID>-YYYYMMDD-HHMMSS), then leaves the device holding exactly the
// older snapshot's content, and the snapshot folder is unchanged.
func TestRestoreCommandOlderSnapshot(t *testing.T) {
	r := newRestoreRig(t, "")
	before := hashTree(t, r.older.Path)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut syncBuffer
	f := restoreFlags{udid: r.udid, snapshot: r.older.ID, location: r.st.Location(), noReboot: true, system: true}
	// The confirmation is answered on stdin.
	if err := runRestore(ctx, f, strings.NewReader("yes\n"), &out, &errOut); err != nil {
		t.Fatalf("restore: %v\n%s", err, errOut.String())
	}
	if got := r.agent.Files(); !reflect.DeepEqual(got, r.want) {
		t.Errorf("device content after restore differs from the snapshot (%d vs %d entries)", len(got), len(r.want))
	}
	if after := hashTree(t, r.older.Path); after != before {
		t.Error("the snapshot folder changed during the restore")
	}
	all, err := r.st.List(r.udid)
	if err != nil {
		t.Fatal(err)
	}
	var archive *store.Snapshot
	for i := range all {
		if all[i].IsArchive() {
			archive = &all[i]
		}
	}
	name := regexp.MustCompile("^" + regexp.QuoteMeta(r.udid) + `-\d{8}-\d{6}$`)
	if archive == nil || !archive.Pinned || !name.MatchString(filepath.Base(archive.Path)) ||
		filepath.Dir(archive.Path) != r.st.Location() {
		t.Fatalf("no pinned archive <UDID>-YYYYMMDD-HHMMSS beside the latest: %+v", archive)
	}
	if _, err := os.Stat(filepath.Join(archive.Path, "Manifest.db")); err != nil {
		t.Errorf("archive is not a backup folder: %v", err)
	}
	if !strings.Contains(errOut.String(), "Archived the latest backup") || !strings.Contains(out.String(), "Restored snapshot "+r.older.ID) {
		t.Errorf("output does not say what happened:\n%s\n%s", out.String(), errOut.String())
	}
	if strings.Contains(out.String(), "restarts") {
		t.Error("--no-reboot run says the device restarts")
	}
}

// TestRestoreCommandNotConfirmed: without --yes, any answer but yes changes nothing: no
// archive, no restore.
func TestRestoreCommandNotConfirmed(t *testing.T) {
	r := newRestoreRig(t, "")
	before, err := r.st.List(r.udid)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	f := restoreFlags{udid: r.udid, snapshot: r.older.ID, location: r.st.Location()}
	if err := runRestore(context.Background(), f, strings.NewReader("no\n"), &out, &errOut); !errors.Is(err, failure.Cancelled) || exitCode(err) != failure.ExitCancelled {
		t.Fatalf("restore without confirmation: %v (exit %d); want cancelled", err, exitCode(err))
	}
	after, _ := r.st.List(r.udid)
	if len(after) != len(before) {
		t.Errorf("store changed: %d entries, was %d", len(after), len(before))
	}
	if c := r.agent.Counters(); c.Restores+c.FailedRestores != 0 {
		t.Errorf("device was asked to restore: %+v", c)
	}
	if !strings.Contains(errOut.String(), "Type yes to continue") {
		t.Errorf("no confirmation prompt: %q", errOut.String())
	}
}

// TestRestoreCommandEncrypted: an encrypted snapshot is restored with the password from the
// keychain or typed after the confirmation (stdin here); a wrong one is the device's 207,
// typed, and the device keeps its content. The password never shows in the output.
func TestRestoreCommandEncrypted(t *testing.T) {
	const pw = "Restore-pw-9c1e"
	r := newRestoreRig(t, pw)
	if !r.older.Encrypted {
		t.Fatalf("fixture snapshot not encrypted: %+v", r.older)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := restoreFlags{udid: r.udid, snapshot: r.older.ID, location: r.st.Location(), noReboot: true, yes: true, fromKeychain: true}

	withSecrets(t, settingstest.NewSecrets(map[string]string{r.udid: "wrong-password"}))
	var out, errOut syncBuffer
	err := runRestore(ctx, f, strings.NewReader(""), &out, &errOut)
	if !errors.Is(err, failure.WrongPassword) {
		t.Fatalf("wrong keychain password: err = %v; want ErrWrongPassword", err)
	}
	if c := r.agent.Counters(); c.Restores != 0 {
		t.Errorf("device restored with a wrong password: %+v", c)
	}

	withSecrets(t, settingstest.NewSecrets(map[string]string{r.udid: pw}))
	if err := runRestore(ctx, f, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("keychain password: %v\n%s", err, errOut.String())
	}
	if got := r.agent.Files(); !reflect.DeepEqual(got, r.want) {
		t.Errorf("device content after restore differs from the snapshot")
	}

	r.agent.Mutate(20)
	f.fromKeychain, f.yes = false, false
	if err := runRestore(ctx, f, strings.NewReader("yes\n"+pw+"\n"), &out, &errOut); err != nil {
		t.Fatalf("password on stdin after the confirmation: %v\n%s", err, errOut.String())
	}
	if got := r.agent.Files(); !reflect.DeepEqual(got, r.want) {
		t.Errorf("device content after the second restore differs from the snapshot")
	}
	if c := r.agent.Counters(); c.Restores != 2 {
		t.Errorf("counters %+v; want 2 restores", c)
	}
	t.Logf("output:\n%s%s", out.String(), errOut.String())
	if strings.Contains(out.String()+errOut.String(), pw) {
		t.Error("the password appears in the output")
	}
}

// TestRestoreCommandDir: --dir takes the folder `snapback backup --dir` wrote into (it holds
// <UDID>/) as well as the <UDID> folder itself; like a store restore it first archives the
// device's latest backup in its configured store. A folder that holds no backup is refused
// with its cause and fix before the device is contacted or anything is asked.
func TestRestoreCommandDir(t *testing.T) {
	r := newRestoreRig(t, "")
	cfgTestEnv(t)
	cfg, err := settings.ConfigPath()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(cfg), 0o700)
	if err := os.WriteFile(cfg, []byte("location: "+r.st.Location()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := t.TempDir()
	if err := os.CopyFS(filepath.Join(plain, r.udid), os.DirFS(r.older.Path)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	empty := t.TempDir()
	os.Mkdir(filepath.Join(empty, "not-a-backup"), 0o755)
	for _, bad := range []string{empty, filepath.Join(empty, "missing"), cfg} {
		var out, errOut syncBuffer
		err := runRestore(ctx, restoreFlags{udid: r.udid, dir: bad, noReboot: true}, strings.NewReader("yes\n"), &out, &errOut)
		if !errors.Is(err, failure.NoBackup) || !strings.Contains(err.Error(), bad) || failure.Remedy(err) == "" {
			t.Errorf("--dir %s: %v; want no-backup naming the folder, with a fix", bad, err)
		}
		if errOut.String() != "" {
			t.Errorf("--dir %s asked or archived before refusing: %q", bad, errOut.String())
		}
	}
	if c := r.agent.Counters(); c.Restores+c.FailedRestores != 0 {
		t.Fatalf("a bad --dir reached the device: %+v", c)
	}

	for i, dir := range []string{plain, filepath.Join(plain, r.udid)} {
		var out, errOut syncBuffer
		f := restoreFlags{udid: r.udid, dir: dir, noReboot: true, yes: true, system: true}
		if err := runRestore(ctx, f, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("--dir %s: %v\n%s", dir, err, errOut.String())
		}
		if got := r.agent.Files(); !reflect.DeepEqual(got, r.want) {
			t.Errorf("--dir %s: the device does not hold the folder's content", dir)
		}
		if !strings.Contains(errOut.String(), "Archived the latest backup") {
			t.Errorf("--dir %s: the latest backup was not archived first:\n%s", dir, errOut.String())
		}
		if c := r.agent.Counters(); c.Restores != int64(i+1) {
			t.Errorf("counters %+v", c)
		}
		r.agent.Mutate(10)
	}
	all, _ := r.st.List(r.udid)
	archives := 0
	for _, s := range all {
		if s.IsArchive() && s.Pinned {
			archives++
		}
	}
	if archives != 1 {
		t.Errorf("%d pinned archives in the store; want the one of the latest backup", archives)
	}
}
