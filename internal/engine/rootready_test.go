//go:build unix

package engine

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/mobilebackup2"
	"snapback/internal/store"
)

// TestRootReadyBeforeFirstWrite: with the store cloning the latest backup in the background,
// the engine asks RootReady before it writes anything under Root, so the clone is complete
// and untouched when the engine starts: at that moment staging's Info.plist is still the
// latest backup's file (same inode), and the run commits a complete backup. And it asks as
// late as that allows, so the clone hides behind the device's preparation: only after the
// Backup request, once the device's silent scan (ScanDelay) is over.
func TestRootReadyBeforeFirstWrite(t *testing.T) {
	const scan = 300 * time.Millisecond
	r := newRig(t, backupsim.Options{Seed: 5, Files: 60, Quirks: backupsim.Quirks{ScanDelay: scan}}, devicesim.DeviceConfig{})
	st, err := store.Open(context.Background(), t.TempDir(), store.Options{Known: "-"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ino := func(p string) uint64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	for round := 0; round < 2; round++ {
		run, err := st.Begin(ctx, r.udid, store.BeginOptions{CloneInBackground: true})
		if err != nil {
			t.Fatal(err)
		}
		called := 0
		var requestedAt atomic.Int64 // when the engine was about to send the Backup request (Unix ns)
		_, err = Backup(ctx, Request{UDID: r.udid, Root: run.Root(), LockRetry: 10 * time.Millisecond,
			Events: func(e mobilebackup2.Event) {
				if e.Kind == mobilebackup2.EventPhase && e.Phase == mobilebackup2.PhasePreparing {
					requestedAt.CompareAndSwap(0, time.Now().UnixNano())
				}
			},
			RootReady: func(ctx context.Context) error {
				called++
				// The device answers nothing for ScanDelay after it got the request, so a
				// RootReady asked at its first folder message comes at least that late.
				if at := requestedAt.Load(); at == 0 {
					t.Errorf("round %d: RootReady asked before the Backup request", round)
				} else if d := time.Since(time.Unix(0, at)); d < scan {
					t.Errorf("round %d: RootReady asked %v after the Backup request, before the device's %v scan ended", round, d, scan)
				}
				if err := run.Ready(ctx); err != nil {
					return err
				}
				latest, staged := ino(filepath.Join(st.LatestDir(r.udid), "Info.plist")), ino(filepath.Join(run.Dir(), "Info.plist"))
				if round > 0 && (latest == 0 || staged != latest) {
					t.Errorf("round %d: when RootReady was asked, staging's Info.plist is inode %d, latest's %d", round, staged, latest)
				}
				return nil
			}})
		if err != nil {
			run.Abort()
			t.Fatal(err)
		}
		if called != 1 {
			t.Errorf("round %d: RootReady called %d times", round, called)
		}
		if _, err := run.Commit(ctx, store.CommitMeta{}); err != nil {
			t.Fatal(err)
		}
		r.agent.Mutate(10)
	}
	list, err := st.List(r.udid)
	if err != nil || len(list) != 2 {
		t.Fatalf("List: %d snapshots, %v", len(list), err)
	}
	for _, sn := range list {
		if err := st.Verify(ctx, r.udid, sn.ID); err != nil {
			t.Errorf("Verify %s: %v", sn.ID, err)
		}
	}
	rep, err := st.VerifyData(ctx, r.udid)
	if err != nil || rep.Unindexed != 0 || rep.Files == 0 {
		t.Fatalf("verify --data: %+v, %v", rep, err)
	}
}

// TestEntryReadyCommitsDeviceState: with the store's clone gated per prefix folder
// (Request.EntryReady), the device's moves and removals at the end of a run land in folders
// the clone has finished, so the committed backup is exactly what the device's Manifest.db
// says: every row's blob present (Commit verifies that) and no blob of a file the device
// deleted brought back by a clone that linked its folder after the removal. The engine asks
// per folder, never for the whole folder, and the run commits through the real simulator
// with 20% churn (a third of it deletions).
func TestEntryReadyCommitsDeviceState(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 9, Files: 900}, devicesim.DeviceConfig{})
	st, err := store.Open(context.Background(), t.TempDir(), store.Options{Known: "-"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := 0; round < 3; round++ {
		before := blobInodes(t, st.LatestDir(r.udid))
		run, err := st.Begin(ctx, r.udid, store.BeginOptions{CloneInBackground: true})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		asked := map[string]bool{}
		_, err = Backup(ctx, Request{UDID: r.udid, Root: run.Root(), LockRetry: 10 * time.Millisecond,
			RootReady: run.RootReady,
			EntryReady: func(ctx context.Context, name string) error {
				mu.Lock()
				asked[name] = true
				mu.Unlock()
				return run.EntryReady(ctx, name)
			}})
		if err != nil {
			run.Abort()
			t.Fatal(err)
		}
		if _, err := run.Commit(ctx, store.CommitMeta{}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if round > 0 && (asked[""] || !asked["Snapshot"]) {
			t.Errorf("round %d: EntryReady asked for %v; want Snapshot and prefix folders one by one, never the whole folder", round, asked)
		}
		// Every prefix folder the device changed (a blob added, replaced or removed) was
		// asked for before it was touched.
		after := blobInodes(t, st.LatestDir(r.udid))
		for id, ino := range after {
			if before[id] != ino && !asked[id[:2]] {
				t.Errorf("round %d: blob %s written without EntryReady(%q)", round, id, id[:2])
			}
		}
		for id := range before {
			if _, ok := after[id]; !ok && !asked[id[:2]] {
				t.Errorf("round %d: blob %s removed without EntryReady(%q)", round, id, id[:2])
			}
		}
		blobsMatchRows(t, st.LatestDir(r.udid))
		r.agent.Mutate(20)
	}
}

// blobInodes maps every blob under backup folder dir (none if it is missing) to its inode.
func blobInodes(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if os.IsNotExist(err) && p == dir {
			return filepath.SkipAll
		}
		if err != nil || e.IsDir() || filepath.Dir(filepath.Dir(p)) != dir {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		m[e.Name()] = fi.Sys().(*syscall.Stat_t).Ino
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// blobsMatchRows fails unless the blobs under dir are exactly the file rows of its
// Manifest.db.
func blobsMatchRows(t *testing.T, dir string) {
	t.Helper()
	db, err := backupfmt.OpenManifestDB(filepath.Join(dir, backupfmt.ManifestDBName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := map[string]bool{}
	if err := db.EachID(context.Background(), func(id string, flags int64) error {
		if flags == backupfmt.FlagFile {
			rows[id] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	blobs := 0
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || filepath.Dir(filepath.Dir(p)) != dir {
			return err
		}
		blobs++
		if !rows[e.Name()] {
			t.Errorf("blob %s has no row in Manifest.db (a deleted file brought back?)", e.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if blobs != len(rows) {
		t.Errorf("%d blobs for %d file rows", blobs, len(rows))
	}
}
