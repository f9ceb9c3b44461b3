package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"snapback/internal/testenv"
	"snapback/settings/settingstest"
	"strings"
	"testing"
	"time"

	"snapback/internal/app"
	"snapback/internal/backupfmt"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/devicesim/simtest"
	"snapback/internal/store"
	"snapback/jobs"
	"snapback/notify"
	"snapback/notify/notifytest"
)

// TestEngineBacksUpSimulatedIPhoneByItself runs the real engine (schedule, runner, store,
// notifications) against the simulated iPhone over a real usbmuxd socket: the device is
// backed up without being asked, the passcode prompt and the completion are notified, and a
// manual run after a change becomes a second snapshot while the first stays as committed.
func TestEngineBacksUpSimulatedIPhoneByItself(t *testing.T) {
	dir := cfgTestEnv(t)
	writeConfig(t, dir, "schedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\n")
	sim := startSim(t)
	id, agent := addDevice(t, sim, 0, "18.1", 80, backupsim.Options{Files: 120, TotalSize: 3 << 20, Seed: 7, PasscodeDelay: 300 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec := &notifytest.Recorder{}
	ready := make(chan *jobs.Manager, 1)
	done := make(chan error, 1)
	log := &syncBuffer{}
	go func() {
		done <- app.New(app.Config{Logger: slogTo(log), Notifier: rec, Ready: func(m *jobs.Manager) { ready <- m }}).Run(ctx)
	}()
	var m *jobs.Manager
	select {
	case m = <-ready:
	case err := <-done:
		t.Fatalf("engine stopped: %v\n%s", err, log.String())
	}

	waitSuccesses := func(n int64) {
		t.Helper()
		if !testenv.Eventually(90*time.Second, func() bool { return agent.Counters().Backups >= n }) {
			t.Fatalf("only %d backups after 90 s; log:\n%s", agent.Counters().Backups, log.String())
		}
		if err := m.WaitIdle(ctx); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "no run in progress", func() bool { return m.Status().Running == 0 })
	}
	// The first backup happens by itself: the device is due as soon as it is attached.
	waitSuccesses(1)

	loc, _ := store.DefaultLocation()
	st, err := store.Open(ctx, loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := st.List(id.UDID)
	if err != nil || len(snaps) != 1 || !snaps[0].Latest || snaps[0].Kind != store.KindFull {
		t.Fatalf("after the automatic run: snapshots %+v, %v; want one full latest", snaps, err)
	}
	latest := st.LatestDir(id.UDID)
	if s, err := backupfmt.ReadStatus(filepath.Join(latest, "Status.plist")); err != nil || s.SnapshotState != "finished" {
		t.Fatalf("latest Status.plist: %+v, %v", s, err)
	}
	firstHash := hashTree(t, latest)

	// A manual run the same day after the phone changed: a second snapshot, incremental,
	// and the first one is now an untouched snapshot.
	agent.Mutate(10)
	if err := m.BackUpNow(ctx, id.UDID); err != nil {
		t.Fatal(err)
	}
	waitSuccesses(2)
	snaps, _ = st.List(id.UDID)
	if len(snaps) != 2 || snaps[1].Kind != store.KindIncremental {
		t.Fatalf("after the manual run: %+v; want full snapshot + incremental latest", snaps)
	}
	if got := hashTree(t, snaps[0].Path); got != firstHash {
		t.Fatal("the first backup changed after it became a snapshot")
	}
	if c := agent.Counters(); c.IncrementalBackups != 1 {
		t.Fatalf("device counters %+v: want the second run incremental", c)
	}

	if rec.Count(notify.PasscodeRequested) < 2 || rec.Count(notify.Completed) != 2 || rec.Count(notify.Failed) != 0 {
		t.Fatalf("notifications: %+v", rec.Messages())
	}
	// The passcode notification comes before the completion of the same run.
	msgs := rec.Messages()
	if msgs[0].Kind != notify.PasscodeRequested {
		t.Fatalf("first notification is %v, want the passcode prompt", msgs[0].Kind)
	}
	// The completion says what was transferred and how big the backup is, each labelled:
	// the incremental run sent far less than the backup's size.
	var completions []notify.Message
	for _, m := range msgs {
		if m.Kind == notify.Completed {
			completions = append(completions, m)
		}
	}
	for i, m := range completions {
		sent, size := completionFigures(t, m.Body)
		want := notify.Done(notify.Device{}, notify.Run{Size: snaps[i].TotalSize}).Body
		if !strings.HasSuffix(want, strings.SplitN(m.Body, "Backup size: ", 2)[1]) {
			t.Errorf("completion %d: %q; want the size of snapshot %s (%q)", i+1, m.Body, snaps[i].ID, want)
		}
		if i == 1 && !(sent < size/2) {
			t.Errorf("incremental completion %q: transferred %.0f is not well below the backup size %.0f", m.Body, sent, size)
		}
	}
	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
}

// completionFigures reads "Transferred X … Backup size: Y." from a completion message.
func completionFigures(t *testing.T, body string) (sent, size float64) {
	t.Helper()
	parse := func(s string) float64 {
		var v float64
		var unit string
		if _, err := fmt.Sscanf(s, "%g %s", &v, &unit); err != nil {
			t.Fatalf("figure %q in %q: %v", s, body, err)
		}
		mult := map[string]float64{"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[strings.TrimRight(unit, ".,")]
		if mult == 0 {
			t.Fatalf("unit %q in %q", unit, body)
		}
		return v * mult
	}
	a, ok1 := strings.CutPrefix(body, "Transferred ")
	_, b, ok2 := strings.Cut(body, "Backup size: ")
	if !ok1 || !ok2 {
		t.Fatalf("completion %q does not label what was transferred and the backup size", body)
	}
	return parse(a), parse(b)
}

// hashTree hashes every file's relative path and bytes below dir.
func hashTree(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		io.WriteString(h, rel+"\x00")
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestBackupCommandGoesThroughStoreAndCountsForTheDay: `snapback backup` without --dir
// commits into the snapshot store (the second run incremental, the first kept as a
// snapshot), and the scheduler then treats the device as backed up today.
func TestBackupCommandGoesThroughStoreAndCountsForTheDay(t *testing.T) {
	dir := cfgTestEnv(t)
	writeConfig(t, dir, "schedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\n")
	sim := startSim(t)
	id, agent := addDevice(t, sim, 1, "17.5.1", 90, backupsim.Options{Files: 80, TotalSize: 2 << 20, Seed: 3, PasscodeDelay: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var out, errOut syncBuffer
	if err := runBackup(ctx, backupFlags{}, &out, &errOut); err != nil {
		t.Fatalf("first backup: %v\n%s", err, errOut.String())
	}
	agent.Mutate(10)
	if err := runBackup(ctx, backupFlags{udid: id.UDID}, &out, &errOut); err != nil {
		t.Fatalf("second backup: %v\n%s", err, errOut.String())
	}
	loc, _ := store.DefaultLocation()
	st, err := store.Open(ctx, loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, _ := st.List(id.UDID)
	if len(snaps) != 2 || snaps[0].Kind != store.KindFull || snaps[1].Kind != store.KindIncremental || !snaps[1].Latest {
		t.Fatalf("snapshots %+v; want a full snapshot and an incremental latest", snaps)
	}
	if err := st.Verify(ctx, id.UDID, snaps[0].ID); err != nil {
		t.Fatalf("first snapshot no longer verifies: %v", err)
	}

	// The snapshot commands on what the backups left.
	cli := func(args ...string) string {
		t.Helper()
		root := newRootCmd("test")
		var b bytes.Buffer
		root.SetOut(&b)
		root.SetErr(&b)
		root.SetArgs(args)
		if err := root.ExecuteContext(ctx); err != nil {
			t.Fatalf("snapback %s: %v\n%s", strings.Join(args, " "), err, b.String())
		}
		return b.String()
	}
	var listed []struct {
		ID     string
		Kind   string
		Latest bool
	}
	if err := json.Unmarshal([]byte(cli("snapshots", "--json")), &listed); err != nil || len(listed) != 2 || !listed[1].Latest {
		t.Fatalf("snapshots --json: %+v, %v", listed, err)
	}
	cli("snapshots", "verify", "--udid", id.UDID)
	if out := cli("prune", "--dry-run", "--udid", id.UDID); !strings.Contains(out, "dry run: nothing deleted") {
		t.Fatalf("prune --dry-run said %q", out)
	}
	cli("snapshots", "archive", "--udid", id.UDID)
	if m, _ := filepath.Glob(filepath.Join(loc, id.UDID+"-2*")); len(m) != 1 {
		t.Fatalf("archive folders %v; want one <UDID>-YYYYMMDD-HHMMSS beside the latest", m)
	}
	cli("snapshots", "delete", "--udid", id.UDID, snaps[0].ID)
	if _, err := os.Stat(snaps[0].Path); !os.IsNotExist(err) {
		t.Fatalf("deleted snapshot folder still there: %v", err)
	}
	if after, _ := st.List(id.UDID); len(after) != 2 || !after[len(after)-1].Latest {
		t.Fatalf("after delete: %+v; want the archive and the latest", after)
	}

	// The engine sees the device attached inside its window but does not back it up again.
	ready := make(chan *jobs.Manager, 1)
	done := make(chan error, 1)
	ectx, ecancel := context.WithCancel(ctx)
	go func() {
		done <- app.New(app.Config{Logger: slogTo(&syncBuffer{}), Ready: func(m *jobs.Manager) { ready <- m }}).Run(ectx)
	}()
	m := <-ready
	if !testenv.Eventually(20*time.Second, func() bool {
		d, ok := m.Status().Device(id.UDID)
		return ok && d.Connected && d.Reason == jobs.ReasonDoneToday
	}) {
		d, _ := m.Status().Device(id.UDID)
		t.Fatalf("device status %+v; want connected and done today", d)
	}
	if n := agent.Counters().Backups; n != 2 {
		t.Fatalf("the engine ran another backup (%d in all) after the CLI's backup of today", n)
	}
	ecancel()
	<-done
}

// TestSettingsEncryptionOnIsAppliedBeforeTheBackup: with `encryption: on` the engine turns
// backup encryption on with the keychain's password before the device's automatic backup;
// a device with no stored password fails with the remedy instead of backing up in clear.
func TestSettingsEncryptionOnIsAppliedBeforeTheBackup(t *testing.T) {
	dir := cfgTestEnv(t)
	writeConfig(t, dir, "schedule: {window: '00:00-24:00', max_retries: 0}\nconditions: {min_battery: 0}\nencryption: on\n")
	sim := startSim(t)
	const password = "correct horse battery staple"
	secrets := settingstest.NewSecrets(nil)
	var udids []string
	var agents []*backupsim.Device
	for i := range 2 {
		id, agent := addDevice(t, sim, 10+i, "17.5.1", 90, backupsim.Options{Files: 40, TotalSize: 1 << 20, Seed: int64(i), KDFRounds: 1000, PasscodeDelay: 20 * time.Millisecond})
		udids, agents = append(udids, id.UDID), append(agents, agent)
	}
	secrets.Set(context.Background(), udids[0], password) // only the first device has one

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := &syncBuffer{}
	ready := make(chan *jobs.Manager, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.New(app.Config{Logger: slogTo(log), Secrets: secrets, Ready: func(m *jobs.Manager) { ready <- m }}).Run(ctx)
	}()
	m := <-ready
	var a, b jobs.DeviceStatus
	if !testenv.Eventually(60*time.Second, func() bool {
		a, _ = m.Status().Device(udids[0])
		b, _ = m.Status().Device(udids[1])
		return a.LastResult == jobs.ResultSuccess && b.LastResult != jobs.ResultNone && !b.State.Busy()
	}) {
		t.Fatalf("timeout: %+v / %+v\n%s", a, b, log.String())
	}
	if !agents[0].WillEncrypt() {
		t.Fatal("device 1 backed up but encryption was not turned on")
	}
	mf, err := backupfmt.ReadManifest(filepath.Join(dir, "data", "snapback", "Backups", udids[0], "Manifest.plist"))
	if err != nil || !mf.IsEncrypted {
		t.Fatalf("device 1's backup: Manifest.plist IsEncrypted=%v, %v", mf.IsEncrypted, err)
	}
	if b.LastResult == jobs.ResultSuccess || agents[1].WillEncrypt() || agents[1].Counters().Backups != 0 {
		t.Fatalf("device 2 has no stored password yet: result %v, encrypted %v, backups %d", b.LastResult, agents[1].WillEncrypt(), agents[1].Counters().Backups)
	}
	if !strings.Contains(b.LastError, "snapback password set --udid "+udids[1]) {
		t.Fatalf("device 2's error does not give the remedy: %q", b.LastError)
	}
	if strings.Contains(log.String(), password) {
		t.Fatal("the password reached the log")
	}
	cancel()
	<-done
}

// TestExtractAndPhotosFromAnOlderSnapshot: after three backups with changes in between,
// extract and photos read the oldest snapshot back byte for byte as the device held it then.
func TestExtractAndPhotosFromAnOlderSnapshot(t *testing.T) {
	dir := cfgTestEnv(t)
	sim := startSim(t)
	id, agent := addDevice(t, sim, 2, "15.8", 100, backupsim.Options{Files: 150, TotalSize: 4 << 20, Seed: 11})
	// content hashes every regular file the device holds now, by domain/relativePath.
	content := func() map[string]string {
		m := map[string]string{}
		for _, f := range agent.Files() {
			if f.Flags != backupfmt.FlagFile {
				continue
			}
			rc, err := agent.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			io.Copy(h, rc)
			rc.Close()
			m[f.Domain+"/"+f.RelativePath] = hex.EncodeToString(h.Sum(nil))
		}
		return m
	}
	ctx := context.Background()
	var sink syncBuffer
	first := content()
	for i := range 3 {
		if i > 0 {
			agent.Mutate(25)
		}
		if err := runBackup(ctx, backupFlags{udid: id.UDID}, &sink, &sink); err != nil {
			t.Fatalf("backup %d: %v\n%s", i+1, err, sink.String())
		}
	}
	changed := 0
	last := content()
	for k, v := range first {
		if last[k] != v {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("the mutations changed nothing; the test would prove nothing")
	}
	loc, _ := store.DefaultLocation()
	st, err := store.Open(ctx, loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, _ := st.List(id.UDID)
	if len(snaps) != 3 {
		t.Fatalf("%d snapshots, want 3", len(snaps))
	}
	oldest := snaps[0].ID

	out := filepath.Join(dir, "extracted")
	if _, stderr, err := filesRun(t, "", "extract", "--udid", id.UDID, "--snapshot", oldest, "*", "--to", out); err != nil {
		t.Fatalf("extract: %v\n%s", err, stderr)
	}
	got := map[string]string{}
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(out, p)
			b, _ := os.ReadFile(p)
			sum := sha256.Sum256(b)
			got[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		}
		return nil
	})
	if len(got) != len(first) {
		t.Fatalf("extracted %d files from the oldest snapshot, the device had %d", len(got), len(first))
	}
	for k, v := range first {
		if got[k] != v {
			t.Fatalf("%s: extracted bytes differ from what the device held at the first backup", k)
		}
	}

	photos := filepath.Join(dir, "photos")
	if _, stderr, err := filesRun(t, "", "photos", "--udid", id.UDID, "--snapshot", oldest, "--to", photos); err != nil {
		t.Fatalf("photos: %v\n%s", err, stderr)
	}
	n := 0
	for k, v := range first {
		rel, ok := strings.CutPrefix(k, "CameraRollDomain/Media/DCIM/")
		if !ok {
			continue
		}
		n++
		b, err := os.ReadFile(filepath.Join(photos, rel))
		sum := sha256.Sum256(b)
		if err != nil || hex.EncodeToString(sum[:]) != v {
			t.Fatalf("photo %s: %v or bytes differ from the first backup", rel, err)
		}
	}
	if n == 0 {
		t.Fatal("the simulated device has no Camera Roll photos")
	}
}

// startSim starts a simulated usbmuxd for the test and points go-ios at it.
func startSim(t *testing.T) *devicesim.Sim {
	t.Helper()
	return simtest.Start(t)
}

// addDevice attaches simulated device number n over USB, running iOS ios, with the content
// and knobs in o (Identity and TempDir are filled in).
func addDevice(t *testing.T, sim *devicesim.Sim, n int, ios string, battery int, o backupsim.Options) (devicesim.Identity, *backupsim.Device) {
	t.Helper()
	id := devicesim.DefaultIdentity(n)
	id.ProductVersion = ios
	_, agent := simtest.AddDevice(t, sim, devicesim.DeviceConfig{Identity: id, USB: true, BatteryLevel: battery}, o)
	return id, agent
}

// writeConfig writes the test's settings file.
func writeConfig(t *testing.T, dir, yaml string) {
	t.Helper()
	cfg := filepath.Join(dir, "config", "snapback", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}
