//go:build unix

package engine

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/store"
)

// TestRootReadyBeforeFirstWrite: with the store cloning the latest backup in the background,
// the engine asks RootReady before it writes anything under Root, so the clone is complete
// and untouched when the engine starts: at that moment staging's Info.plist is still the
// latest backup's file (same inode), and the run commits a complete backup.
func TestRootReadyBeforeFirstWrite(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 5, Files: 60}, devicesim.DeviceConfig{})
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
		_, err = Backup(ctx, Request{UDID: r.udid, Root: run.Root(), LockRetry: 10 * time.Millisecond,
			RootReady: func(ctx context.Context) error {
				called++
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
