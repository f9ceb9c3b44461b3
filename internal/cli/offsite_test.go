package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/devicesim/backupsim"
	"snapback/internal/engine"
	"snapback/internal/offsite"
	"snapback/internal/store"
	"snapback/internal/testenv"
	"snapback/settings/settingstest"
)

func offsiteRun(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "snapback", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newOffsiteCmd())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// `snapback offsite init --generate` creates the repository and keeps the password it shows
// once in the keychain; push, status, list, restore and check then work from the settings
// alone, and the password is in no file Snapback or restic wrote.
func TestOffsiteCommands(t *testing.T) {
	testenv.RequireTool(t, "restic")
	dir := cfgTestEnv(t)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	loc := filepath.Join(dir, "backups")
	repo := filepath.Join(dir, "repo")
	os.MkdirAll(loc, 0o755)
	writeConfig(t, dir, "location: "+loc+"\noffsite: {repository: "+repo+", schedule: manual, limit_upload: 50MiB/s, keep: {last: 5}}\n")
	secrets := &settingstest.Secrets{}
	withSecrets(t, secrets)
	sim := startSim(t)
	id, agent := addDevice(t, sim, 0, "18.1", 80, backupsim.Options{Files: 60, TotalSize: 2 << 20, Seed: 5, PasscodeDelay: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	backUp := func() store.Snapshot {
		t.Helper()
		run, err := st.Begin(ctx, id.UDID, store.BeginOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := engine.Backup(ctx, engine.Request{UDID: id.UDID, Root: run.Root(), LockRetry: 10 * time.Millisecond}); err != nil {
			run.Abort()
			t.Fatal(err)
		}
		sn, err := run.Commit(ctx, store.CommitMeta{})
		if err != nil {
			t.Fatal(err)
		}
		return sn
	}
	first := backUp()

	out, err := offsiteRun(t, "", "offsite", "init", "--generate")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Repository password: (\S+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "Keep a copy") {
		t.Fatalf("init --generate shows no password to keep:\n%s", out)
	}
	pw := m[1]
	if got, err := secrets.Get(ctx, offsite.PasswordAccount(repo)); err != nil || got != pw {
		t.Fatalf("keychain holds %q, %v; want the generated password", got, err)
	}
	if out, err := offsiteRun(t, "another\n", "offsite", "init"); err == nil || !strings.Contains(err.Error(), "config file already exists") {
		t.Errorf("second init: %v\n%s", err, out)
	}
	if got, _ := secrets.Get(ctx, offsite.PasswordAccount(repo)); got != pw {
		t.Fatal("a failed init replaced the stored password")
	}
	if out, err := offsiteRun(t, "wrong\n", "offsite", "init", "--existing"); err == nil || offsite.KindOf(err) != offsite.KindWrongPassword {
		t.Errorf("init --existing with a wrong password: %v\n%s", err, out)
	}

	if out, err = offsiteRun(t, "", "offsite", "push"); err != nil || !strings.Contains(out, "copied "+first.ID) {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if out, err = offsiteRun(t, "", "offsite", "status"); err != nil || !strings.Contains(out, "up to date: the latest backup "+first.ID) {
		t.Fatalf("status: %v\n%s", err, out)
	}
	agent.Mutate(10)
	second := backUp()
	if out, err = offsiteRun(t, "", "offsite", "status", "--udid", id.UDID); err != nil || !strings.Contains(out, "behind") {
		t.Fatalf("status after a new backup: %v\n%s", err, out)
	}
	if out, err = offsiteRun(t, "", "offsite", "push", "--udid", id.UDID); err != nil || !strings.Contains(out, "copied "+second.ID) {
		t.Fatalf("second push: %v\n%s", err, out)
	}
	t.Logf("second push: %s", strings.TrimSpace(out))

	out, err = offsiteRun(t, "", "offsite", "list", "--udid", id.UDID, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct{ UDID, Device, Snapshot string }
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 ||
		rows[0].Snapshot != first.ID || rows[1].Snapshot != second.ID || rows[0].UDID != id.UDID || rows[0].Device != id.DeviceName {
		t.Fatalf("list --json: %v\n%s", err, out)
	}

	to := filepath.Join(dir, "restored")
	if out, err = offsiteRun(t, "", "offsite", "restore", "--udid", id.UDID, "--snapshot", first.ID, "--to", to); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	firstNow, _ := st.Get(id.UDID, first.ID)
	if a, b := hashTree(t, firstNow.Path), hashTree(t, filepath.Join(to, id.UDID)); a != b {
		t.Fatal("the restored backup differs from the local snapshot")
	}
	// A new computer: restore the newest copy into an empty backup location; the next backup
	// adopts it as the latest and continues incrementally from it.
	newLoc := filepath.Join(dir, "new-computer")
	if out, err = offsiteRun(t, "", "offsite", "restore", "--udid", id.UDID, "--to", newLoc); err != nil {
		t.Fatalf("restore into a new location: %v\n%s", err, out)
	}
	st2, err := store.Open(ctx, newLoc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := st2.Begin(ctx, id.UDID, store.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := engine.Backup(ctx, engine.Request{UDID: id.UDID, Root: run.Root(), LockRetry: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run.Commit(ctx, store.CommitMeta{}); err != nil {
		t.Fatal(err)
	}
	if snaps, _ := st2.List(id.UDID); res.Backup.FullBackup || len(snaps) != 2 || snaps[0].Kind != store.KindAdopted {
		t.Errorf("backup after restoring into a new location: full %v, snapshots %+v; want incremental after the adopted copy", res.Backup.FullBackup, snaps)
	}

	if out, err = offsiteRun(t, "", "offsite", "check"); err != nil || !strings.Contains(out, "is consistent") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, sub := range []string{"config", "state", "data", "cache", "backups", "repo", "new-computer"} {
		filepath.Walk(filepath.Join(dir, sub), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(pw)) {
					t.Errorf("the repository password is written in %s", p)
				}
			}
			return nil
		})
	}
}
