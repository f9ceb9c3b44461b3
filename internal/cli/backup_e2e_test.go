package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/settings/settingstest"
)

// cliRun runs the whole command line as Main does (parse, run, print a failure once, map
// the exit code) and returns stdout, stderr and the exit status.
func cliRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd("test")
	root.SetArgs(args)
	root.SetIn(strings.NewReader(""))
	root.SetOut(&out)
	root.SetErr(&errOut)
	code = execute(root, &errOut)
	return out.String(), errOut.String(), code
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// `snapback backup` into the store ends with a line naming the committed latest folder
// <location>/<UDID> (which holds Status.plist, finished) and the snapshot ID; --json's
// result names the same folder and ID. Before, it named the staging folder (deleted at
// commit) and no snapshot.
func TestBackupNamesCommittedFolderAndSnapshot(t *testing.T) {
	cfgTestEnv(t)
	sim := startSim(t)
	id, _ := addDevice(t, sim, 3, "17.5.1", 90, backupsim.Options{Files: 40, TotalSize: 1 << 20, Seed: 5})
	loc := filepath.Join(t.TempDir(), "backups")
	if err := os.Mkdir(loc, 0o755); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := cliRun(t, "backup", "--location", loc)
	if code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, stdout, stderr)
	}
	st, err := store.Open(context.Background(), loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := st.List(id.UDID)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots %+v, %v", snaps, err)
	}
	latest := filepath.Join(loc, id.UDID)
	last := lastLine(stdout)
	if !strings.Contains(last, latest) || !strings.Contains(last, snaps[0].ID) || strings.Contains(last, "staging") {
		t.Fatalf("final line %q; want it to name %s and snapshot %s", last, latest, snaps[0].ID)
	}
	if s, err := backupfmt.ReadStatus(filepath.Join(latest, "Status.plist")); err != nil || s.SnapshotState != "finished" {
		t.Fatalf("%s/Status.plist: %+v, %v", latest, s, err)
	}

	stdout, stderr, code = cliRun(t, "backup", "--location", loc, "--udid", id.UDID, "--json")
	if code != 0 {
		t.Fatalf("backup --json: exit %d\n%s", code, stderr)
	}
	var res jsonResult
	if err := json.Unmarshal([]byte(lastLine(stdout)), &res); err != nil {
		t.Fatalf("--json result line: %v\n%s", err, stdout)
	}
	snaps, _ = st.List(id.UDID)
	if len(snaps) != 2 || !snaps[1].Latest {
		t.Fatalf("after the second backup: %+v", snaps)
	}
	if res.Kind != "result" || !res.OK || res.Dir != latest || res.Snapshot != snaps[1].ID || res.Location != loc || res.Size <= 0 {
		t.Fatalf("--json result %+v; want dir %s, snapshot %s, location %s and a size", res, latest, snaps[1].ID, loc)
	}
}

// A UDID is matched in any letter case and checked before anything is transferred or
// created: a wrong one fails fast with "no such device" and leaves the location as it was;
// the lower-case spelling of the real one backs the device up into its upper-case folder.
func TestBackupValidatesUDIDBeforeWriting(t *testing.T) {
	cfgTestEnv(t)
	sim := startSim(t)
	id, agent := addDevice(t, sim, 4, "17.5.1", 90, backupsim.Options{Files: 30, TotalSize: 1 << 20, Seed: 6})
	loc := filepath.Join(t.TempDir(), "backups")
	if err := os.Mkdir(loc, 0o755); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, stderr, code := cliRun(t, "backup", "--location", loc, "--udid", "0000-WRONG")
	took := time.Since(start)
	t.Logf("--udid 0000-WRONG refused in %v", took.Round(time.Millisecond))
	if code != failure.ExitNoDevice || !strings.Contains(stderr, "no such device") || took > 2*time.Second {
		t.Fatalf("--udid 0000-WRONG: exit %d after %v, stderr %q; want exit %d with \"no such device\" within 2 s", code, took, stderr, failure.ExitNoDevice)
	}
	if ents, _ := os.ReadDir(loc); len(ents) != 0 {
		t.Fatalf("a wrong UDID left %d entries under the location (%s…)", len(ents), ents[0].Name())
	}
	dir := filepath.Join(t.TempDir(), "plain")
	if _, _, code := cliRun(t, "backup", "--dir", dir, "--udid", "0000-WRONG"); code == 0 {
		t.Fatal("--dir with a wrong UDID succeeded")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("--dir with a wrong UDID created %s (%v)", dir, err)
	}
	if agent.Counters().Backups != 0 {
		t.Fatal("a wrong UDID started a backup")
	}

	stdout, stderr, code := cliRun(t, "backup", "--location", loc, "--udid", strings.ToLower(id.UDID))
	if code != 0 {
		t.Fatalf("lower-case UDID: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(lastLine(stdout), filepath.Join(loc, id.UDID)) {
		t.Fatalf("final line %q does not name the device's own folder", lastLine(stdout))
	}
	if s, err := backupfmt.ReadStatus(filepath.Join(loc, id.UDID, "Status.plist")); err != nil || s.SnapshotState != "finished" {
		t.Fatalf("lower-case UDID backup: Status.plist %+v, %v", s, err)
	}
	if ents, _ := os.ReadDir(loc); len(ents) != 2 { // <UDID>/ and Snapback.Versions/
		t.Fatalf("location holds %d entries, want the device folder and Snapback.Versions", len(ents))
	}
}

// `backup --dir <store location>` would write into the committed latest backup in place:
// it is refused, and the store still verifies.
func TestBackupDirIntoStoreRefused(t *testing.T) {
	cfgTestEnv(t)
	sim := startSim(t)
	id, agent := addDevice(t, sim, 5, "17.5.1", 90, backupsim.Options{Files: 30, TotalSize: 1 << 20, Seed: 8})
	loc := filepath.Join(t.TempDir(), "backups")
	os.Mkdir(loc, 0o755)
	if _, stderr, code := cliRun(t, "backup", "--location", loc); code != 0 {
		t.Fatalf("backup: %d %s", code, stderr)
	}
	agent.Mutate(20)
	for _, dir := range []string{loc, filepath.Join(loc, id.UDID)} {
		_, stderr, code := cliRun(t, "backup", "--dir", dir)
		if code != failure.ExitUsage || !strings.Contains(stderr, "snapshot store") {
			t.Fatalf("backup --dir %s: exit %d, %q; want a refusal (exit %d)", dir, code, stderr, failure.ExitUsage)
		}
	}
	if agent.Counters().Backups != 1 {
		t.Fatal("the refused runs talked to the device")
	}
	st, _ := store.Open(context.Background(), loc, store.Options{})
	if err := st.Verify(context.Background(), id.UDID, "latest"); err != nil {
		t.Fatalf("the store no longer verifies: %v", err)
	}
}

// The passcode not entered (device error 208 after the sheet timed out): the command prints
// nothing of the error itself and its one line (Main prints failure.Text once) has "208" at
// most once, the remedy once and the cause once; the exit code is the locked one. The device's
// sheet times out after 600 ms; the engine's cancel window is scaled down to 100 ms to match
// (a sheet gone sooner than that before a 208 would be a Cancel tap).
func TestBackupPasscodeTimeoutPrintedOnce(t *testing.T) {
	cfgTestEnv(t)
	sim := startSim(t)
	addDevice(t, sim, 6, "17.5.1", 90, backupsim.Options{Files: 10, TotalSize: 1 << 18, Seed: 9,
		PasscodeDelay: -1, PasscodeTimeout: 600 * time.Millisecond})
	var out, errOut syncBuffer
	err := runBackup(context.Background(), backupFlags{passcodeCancelWindow: 100 * time.Millisecond}, &out, &errOut)
	if failure.ClassOf(err) != failure.DeviceLocked || exitCode(err) != failure.ExitLocked {
		t.Fatalf("backup: %v (class %s, exit %d); want the passcode timeout, exit %d", err, failure.ClassOf(err), exitCode(err), failure.ExitLocked)
	}
	if all := out.String() + errOut.String(); strings.Contains(all, "Backup failed") || strings.Contains(all, failure.DeviceLocked.Message()) {
		t.Fatalf("the command printed the error itself (Main prints it once):\n%s", all)
	}
	line := failure.Text(err)
	remedy := failure.DeviceLocked.Remedy()
	if strings.Count(line, "208") > 1 || strings.Count(strings.ToLower(line), strings.ToLower(remedy)) != 1 ||
		strings.Count(line, failure.DeviceLocked.Message()) != 1 {
		t.Fatalf("the error line repeats itself: %q", line)
	}
}

// Another run holds the device's store lock: the backup is refused as busy, with the busy
// exit code, and the holder's backup is untouched.
func TestBackupBusyExitsWithBusyCode(t *testing.T) {
	cfgTestEnv(t)
	sim := startSim(t)
	id, agent := addDevice(t, sim, 7, "17.5.1", 90, backupsim.Options{Files: 10, TotalSize: 1 << 18, Seed: 10})
	loc := filepath.Join(t.TempDir(), "backups")
	os.Mkdir(loc, 0o755)
	st, err := store.Open(context.Background(), loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := st.Begin(context.Background(), id.UDID, store.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Abort()
	_, stderr, code := cliRun(t, "backup", "--location", loc)
	if code != failure.ExitBusy || strings.Count(stderr, "snapback:") != 1 {
		t.Fatalf("backup while another run holds the lock: exit %d (want %d)\n%s", code, failure.ExitBusy, stderr)
	}
	if agent.Counters().Backups != 0 {
		t.Fatal("the busy run talked to the device")
	}
}

// `snapback backup` applies the device's encryption setting as the scheduled runs do.
func TestBackupCommandAppliesEncryptionSetting(t *testing.T) {
	dir := cfgTestEnv(t)
	writeConfig(t, dir, "encryption: on\n")
	sim := startSim(t)
	id, agent := addDevice(t, sim, 8, "17.5.1", 90, backupsim.Options{Files: 20, TotalSize: 1 << 19, Seed: 12, KDFRounds: 1000, PasscodeDelay: 20 * time.Millisecond})
	secrets := settingstest.NewSecrets(map[string]string{id.UDID: "tr0ub4dor&3"})
	var out, errOut syncBuffer
	if err := runBackup(context.Background(), backupFlags{secrets: secrets}, &out, &errOut); err != nil {
		t.Fatalf("backup: %v\n%s", err, errOut.String())
	}
	loc, _ := store.DefaultLocation()
	mf, err := backupfmt.ReadManifest(filepath.Join(loc, id.UDID, "Manifest.plist"))
	if err != nil || !mf.IsEncrypted || !agent.WillEncrypt() {
		t.Fatalf("encryption: on ignored by snapback backup: IsEncrypted=%v, device encrypting %v, %v", mf.IsEncrypted, agent.WillEncrypt(), err)
	}
}

// Every command finds a device's store the same way: the location in the settings, or
// --location; --udid in any letter case. `--dir` is never a store location.
func TestCommandsFindTheStoreFromSettings(t *testing.T) {
	dir := cfgTestEnv(t)
	loc := filepath.Join(dir, "elsewhere")
	os.Mkdir(loc, 0o755)
	writeConfig(t, dir, "location: "+loc+"\n")
	sim := startSim(t)
	id, _ := addDevice(t, sim, 12, "17.5.1", 90, backupsim.Options{Files: 20, TotalSize: 1 << 19, Seed: 14})
	if _, stderr, code := cliRun(t, "backup"); code != 0 {
		t.Fatalf("backup: %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(loc, id.UDID, "Status.plist")); err != nil {
		t.Fatalf("the backup ignored the location in the settings: %v", err)
	}
	for _, args := range [][]string{
		{"snapshots", "verify", "--udid", strings.ToLower(id.UDID)},
		{"snapshots", "verify", "--location", loc},
		{"prune", "--dry-run", "--udid", strings.ToLower(id.UDID)},
	} {
		if stdout, stderr, code := cliRun(t, args...); code != 0 {
			t.Fatalf("snapback %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	if _, stderr, code := cliRun(t, "snapshots", "--dir", loc); code != failure.ExitUsage || !strings.Contains(stderr, "--location "+loc) {
		t.Fatalf("snapshots --dir (a store location) was accepted: exit %d %s", code, stderr)
	}
}
