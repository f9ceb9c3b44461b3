package offsite_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/failure"
	"snapback/internal/offsite"
	"snapback/internal/testenv"
	"snapback/settings/settingstest"
)

// isolateHome points HOME and the XDG folders (restic's cache, Snapback's config and state)
// into the test, so the test can search every folder a tool might write a secret to.
func isolateHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(home, ".local", "state"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, ".local", "share"))
	// A stray password variable must not be what restic uses: the keychain's must.
	t.Setenv("RESTIC_PASSWORD", "stray-env-password")
	return home
}

// Three backups of a mutating simulated iPhone, each pushed to a restic repository: a local
// folder, and a REST server on loopback (`rclone serve restic`). They give three restic
// snapshots tagged with the UDID, device name and Snapback snapshot ID; the second and third
// uploads add about the changed bytes only; restoring the middle one gives a folder
// byte-identical to the local snapshot, verified like any backup; `restic check --read-data`
// passes; the password is in no argument list, environment or file.
func TestThreeBackupsPushedRestoredAndChecked(t *testing.T) {
	testenv.RequireTool(t, "restic")
	for _, backend := range []string{"local", "rest"} {
		t.Run(backend, func(t *testing.T) {
			home := isolateHome(t)
			var repo, repoDir string
			if backend == "local" {
				repoDir = filepath.Join(t.TempDir(), "repo")
				repo = repoDir
			} else {
				repo = startRESTServer(t)
			}
			// The repository's own behaviour (idempotent push, refused overwrite, keep
			// rules) does not depend on the backend; check it once, on the local one.
			threeBackups(t, home, repo, repoDir, backend == "local")
		})
	}
}

func threeBackups(t *testing.T, home, repo, repoDir string, extras bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := startDevice(t, 120, 4<<20, 11)

	pw := randomPassword(t)
	secrets := settingstest.NewSecrets(map[string]string{offsite.PasswordAccount(repo): pw})
	r := &offsite.Restic{Repository: repo, Password: offsite.KeychainPassword(secrets, repo)}
	if v, err := r.CheckVersion(ctx); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("restic %s", v)
	}
	if err := r.Init(ctx, pw); err != nil {
		t.Fatal(err)
	}

	var local []string // Snapback snapshot IDs, in order
	var inspected []string
	for i := range 3 {
		if i > 0 {
			m := d.agent.Mutate(8)
			t.Logf("device mutation %d: +%d ~%d -%d files", i, m.Added, m.Modified, m.Deleted)
		}
		t0 := time.Now()
		sn := d.backUp(t, ctx)
		t1 := time.Now()
		local = append(local, sn.ID)
		var once sync.Once
		res, err := offsite.Push(ctx, r, d.st, d.udid, offsite.PushOptions{Events: func(ev offsite.Event) {
			if ev.Kind != offsite.EventStatus {
				return
			}
			// restic is running right now (it waits for us to read its output): look at
			// its argument list and environment the way any process of this user can.
			once.Do(func() {
				for _, pid := range resticChildren(t, os.Getpid()) {
					for _, f := range []string{"cmdline", "environ"} {
						b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
						if err != nil {
							continue
						}
						if strings.Contains(string(b), pw) {
							t.Errorf("the password is in /proc/%d/%s", pid, f)
						}
						if f == "environ" && strings.Contains(string(b), "RESTIC_PASSWORD") {
							t.Errorf("restic's environment has RESTIC_PASSWORD")
						}
						inspected = append(inspected, fmt.Sprintf("%d/%s", pid, f))
					}
				}
			})
		}})
		if err != nil {
			t.Fatalf("push %d: %v", i+1, err)
		}
		if res.AlreadyThere || res.Snapshot.SnapbackID != sn.ID {
			t.Fatalf("push %d: %+v", i+1, res)
		}
		t2 := time.Now()
		var changed int64
		if i > 0 {
			prev, err := d.st.Get(d.udid, local[i-1])
			if err != nil {
				t.Fatal(err)
			}
			changed = changedBytes(t, prev.Path, d.st.LatestDir(d.udid))
		} else {
			changed = sn.TotalSize
		}
		t.Logf("push %d (%s, %s): backup %d bytes in %d files (%v); changed %d bytes; push %v: restic data_added %d bytes, %d files new, %d changed, %d unmodified",
			i+1, filepath.Base(repo), sn.ID, sn.TotalSize, sn.FileCount, t1.Sub(t0).Round(time.Millisecond), changed,
			t2.Sub(t1).Round(time.Millisecond), res.Summary.DataAdded,
			res.Summary.FilesNew, res.Summary.FilesChanged, res.Summary.FilesUnmodified)
		if i > 0 {
			// Deduplication: an incremental push costs the changed bytes (plus restic's
			// trees), never the whole backup again.
			if res.Summary.DataAdded > changed+changed/5+256<<10 {
				t.Errorf("push %d added %d bytes for %d changed bytes", i+1, res.Summary.DataAdded, changed)
			}
			if changed > sn.TotalSize/3 {
				t.Errorf("the mutation changed %d of %d bytes: too much for the test to tell dedup from none", changed, sn.TotalSize)
			}
			if res.Summary.FilesUnmodified == 0 {
				t.Errorf("push %d: restic compared no file with the parent", i+1)
			}
		}
	}
	if len(inspected) == 0 && runtime.GOOS == "linux" {
		t.Error("no restic process was seen while it ran")
	}

	snaps, err := r.Snapshots(ctx, d.udid)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 3 {
		t.Fatalf("the repository holds %d snapshots of the device, want 3: %+v", len(snaps), snaps)
	}
	for i, s := range snaps {
		if s.UDID != d.udid || s.DeviceName != d.name || s.SnapbackID != local[i] {
			t.Errorf("restic snapshot %d: udid %q device %q snapshot %q; want %q %q %q (tags %v)",
				i, s.UDID, s.DeviceName, s.SnapbackID, d.udid, d.name, local[i], s.Tags)
		}
	}

	// Pushing a snapshot the repository holds uploads nothing.
	if !extras {
	} else if res, err := offsite.Push(ctx, r, d.st, d.udid, offsite.PushOptions{}); err != nil || !res.AlreadyThere {
		t.Errorf("second push of the latest: %+v, %v; want AlreadyThere", res, err)
	}

	// The middle backup comes back byte for byte, as a standard backup folder.
	to := t.TempDir()
	rr, err := offsite.Restore(ctx, r, d.udid, local[1], to)
	if err != nil {
		t.Fatal(err)
	}
	if rr.Dir != filepath.Join(to, d.udid) || rr.Snapshot.SnapbackID != local[1] {
		t.Fatalf("restore: %+v", rr)
	}
	mid, err := d.st.Get(d.udid, local[1])
	if err != nil {
		t.Fatal(err)
	}
	n := compareTrees(t, mid.Path, rr.Dir)
	db, err := backupfmt.OpenManifestDB(filepath.Join(rr.Dir, backupfmt.ManifestDBName))
	if err != nil {
		t.Fatalf("restored Manifest.db: %v", err)
	}
	rows := 0
	db.Each(ctx, func(backupfmt.Record) error { rows++; return nil })
	db.Close()
	t.Logf("restored %s: %d files identical to the local snapshot, Manifest.db with %d rows", local[1], n, rows)
	// Restoring over an existing folder is refused and leaves it alone.
	if !extras {
	} else if _, err := offsite.Restore(ctx, r, d.udid, local[1], to); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("restore over an existing folder: %v", err)
	}

	t3 := time.Now()
	out, err := r.Check(ctx, offsite.CheckOptions{ReadDataSubset: "100%"})
	t.Logf("restic check --read-data-subset 100%%: %v", time.Since(t3).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("restic check: %v\n%s", err, out)
	}

	// Keep rules: keep the last 2 of the device.
	if extras {
		gone, err := r.Forget(ctx, d.udid, offsite.Keep{Last: 2})
		if err != nil {
			t.Fatal(err)
		}
		if snaps2, _ := r.Snapshots(ctx, d.udid); len(gone) != 1 || len(snaps2) != 2 || snaps2[0].SnapbackID != local[1] {
			t.Errorf("forget --keep-last 2: removed %v, left %d", gone, len(snaps2))
		}
	}

	roots := []string{home, d.st.Location(), to}
	if repoDir != "" {
		roots = append(roots, repoDir)
	}
	if hits := filesContaining(t, pw, roots...); len(hits) > 0 {
		t.Errorf("the password is written in %v", hits)
	}
	if views, _ := os.ReadDir(filepath.Join(d.st.Location(), "Snapback.Versions", d.udid, "views-offsite")); len(views) != 0 {
		t.Errorf("%d upload views left behind", len(views))
	}
}

// restic's failures come back classified, with restic's own message and a remedy.
func TestResticFailuresAreClassified(t *testing.T) {
	testenv.RequireTool(t, "restic")
	isolateHome(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo := filepath.Join(t.TempDir(), "repo")
	secrets := settingstest.NewSecrets(nil)
	r := &offsite.Restic{Repository: repo, Password: offsite.KeychainPassword(secrets, repo)}

	expect := func(what string, err error, kind offsite.Kind, words ...string) {
		t.Helper()
		var e *offsite.Error
		if !errors.As(err, &e) || e.Kind != kind {
			t.Errorf("%s: %v (kind %v); want kind %v", what, err, offsite.KindOf(err), kind)
			return
		}
		// Shown as the CLI and notifications show it: the cause once, the remedy once.
		text := failure.Text(err)
		if e.Remedy() == "" || failure.Remedy(err) != e.Remedy() || strings.Count(text, e.Remedy()[1:]) != 1 {
			t.Errorf("%s: remedy %q not shown once in %q", what, e.Remedy(), text)
		}
		for _, w := range words {
			if !strings.Contains(text, w) {
				t.Errorf("%s: %q does not say %q", what, text, w)
			}
		}
	}

	_, err := r.Snapshots(ctx, "")
	expect("no password in the keychain", err, offsite.KindNoPassword, "snapback offsite init")

	secrets.Set(ctx, offsite.PasswordAccount(repo), "right-password")
	_, err = r.Snapshots(ctx, "")
	expect("no repository", err, offsite.KindNoRepository, "unable to open config file", "snapback offsite init")

	if err := r.Init(ctx, "right-password"); err != nil {
		t.Fatal(err)
	}
	expect("init twice", r.Init(ctx, "right-password"), offsite.KindExists, "config file already exists")

	secrets.Set(ctx, offsite.PasswordAccount(repo), "wrong-password")
	_, err = r.Snapshots(ctx, "")
	expect("wrong password", err, offsite.KindWrongPassword, "wrong password or no key found")

	// A server that is not there: a closed loopback port.
	gone := &offsite.Restic{Repository: "rest:http://127.0.0.1:1/", Password: func(context.Context) (string, error) { return "x", nil }}
	_, err = gone.Snapshots(ctx, "")
	expect("unreachable server", err, offsite.KindNetwork, "connection refused")
	if !failure.Retryable(err) {
		t.Error("a network failure should be retryable")
	}

	missing := &offsite.Restic{Binary: filepath.Join(t.TempDir(), "restic")}
	_, err = missing.CheckVersion(ctx)
	expect("restic missing", err, offsite.KindMissing, "0.14.0", "apt install restic")

	// A restic that is too old (a script standing in for an old release: only its version
	// output matters here).
	old := filepath.Join(t.TempDir(), "restic")
	if err := os.WriteFile(old, []byte("#!/bin/sh\necho 'restic 0.9.6 compiled with go1.13 on linux/amd64'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = (&offsite.Restic{Binary: old}).CheckVersion(ctx)
	expect("restic too old", err, offsite.KindTooOld, "0.9.6", "0.14.0 or newer")

	none := &offsite.Restic{}
	_, err = none.Snapshots(ctx, "")
	expect("no repository configured", err, offsite.KindConfig, "offsite.repository")
}
