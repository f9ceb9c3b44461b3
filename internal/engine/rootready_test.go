//go:build unix

package engine

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
