package app

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/offsite"
	"snapback/internal/testenv"
	"snapback/jobs"
	"snapback/notify"
	"snapback/settings"
	"snapback/settings/settingstest"
)

// A backup run of a device whose settings name an off-site repository (schedule
// after_commit) is followed by a push of the committed snapshot; a failing push (wrong
// password) leaves the backup successful and reaches OffsiteFailed with restic's message.
func TestRunPushesOffsiteAfterCommit(t *testing.T) {
	testenv.RequireTool(t, "restic")
	_, udid := startDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	repo := filepath.Join(t.TempDir(), "repo")
	secrets := settingstest.NewSecrets(map[string]string{offsite.PasswordAccount(repo): "offsite-pw-1"})
	if err := (&offsite.Restic{Repository: repo}).Init(ctx, "offsite-pw-1"); err != nil {
		t.Fatal(err)
	}
	ds := settings.Defaults()
	ds.Location = t.TempDir()
	ds.Offsite = settings.Offsite{Repository: repo, Schedule: settings.OffsiteAfterCommit, Keep: settings.OffsiteKeep{Last: 5}}
	var mu sync.Mutex
	var failures []error
	r := &Runner{Backups: &Backups{Secrets: secrets, Stores: &Stores{}, OffsiteFailed: func(_, _ string, err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}}}
	var phases []jobs.Phase
	res, err := r.Run(ctx, jobs.RunRequest{UDID: udid, Settings: ds}, func(p jobs.Progress) { phases = append(phases, p.Phase) })
	if err != nil {
		t.Fatal(err)
	}
	// The upload's progress follows the commit.
	if i := slices.Index(phases, jobs.PhaseCommitting); i < 0 || !slices.Contains(phases[i:], jobs.PhaseTransferring) {
		t.Errorf("phases %v: no upload progress after the commit", phases)
	}
	snaps, err := offsite.FromSettings(ds.Offsite, secrets, nil).Snapshots(ctx, udid)
	if err != nil || len(snaps) != 1 || snaps[0].SnapbackID != res.Snapshot {
		t.Fatalf("off-site after the run: %+v, %v; want the snapshot %s", snaps, err, res.Snapshot)
	}

	secrets.Set(ctx, offsite.PasswordAccount(repo), "not-the-password")
	if _, err := r.Run(ctx, jobs.RunRequest{UDID: udid, Settings: ds}, func(jobs.Progress) {}); err != nil {
		t.Fatalf("a failed off-site copy failed the backup: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 1 || offsite.KindOf(failures[0]) != offsite.KindWrongPassword {
		t.Fatalf("OffsiteFailed heard %v; want one wrong-password failure", failures)
	}
	var e *offsite.Error
	if !errors.As(failures[0], &e) || e.Remedy() == "" {
		t.Fatalf("no remedy: %v", failures[0])
	}
	msg := OffsiteFailedMessage(udid, "Anna's iPhone", failures[0])
	if msg.Kind != notify.Failed || msg.Title != "Off-site copy of Anna's iPhone failed" ||
		!strings.Contains(msg.Body, "wrong password or no key found") || strings.Count(msg.Body, "snapback offsite init --existing") != 1 {
		t.Errorf("failed alert: %+v", msg)
	}
}
