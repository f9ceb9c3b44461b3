package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"snapback/internal/devicelink"
	"snapback/internal/failure"
)

// TestBackupReadyAtFirstFolderMessage: with BackupOptions.Ready set, Backup leaves the folder
// alone until the device's first message that touches it (the store may still be cloning
// into it): the leftover Snapshot folder is still there after the Backup request and a
// free-space question, Ready has not been called; at the first download Ready has been
// called exactly once and the leftover is gone; later messages do not call it again.
func TestBackupReadyAtFirstFolderMessage(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	leftover := filepath.Join(root, u, "Snapshot", "zz")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		if _, err := d.expectBackup(); err != nil {
			return err
		}
		if n := calls.Load(); n != 0 {
			return fmt.Errorf("Ready called %d times before any device message", n)
		}
		if _, err := os.Stat(leftover); err != nil {
			return fmt.Errorf("leftover Snapshot touched before Ready: %v", err)
		}
		if code, _, err := d.simple(devicelink.GetFreeDiskSpace); err != nil || code != 0 {
			return fmt.Errorf("free space %v %v", code, err)
		}
		if n := calls.Load(); n != 0 {
			return fmt.Errorf("Ready called %d times for GetFreeDiskSpace", n)
		}
		if _, code, err := d.download(u + "/Status.plist"); err != nil || code != devicelink.ErrCodeMultiStatus {
			return fmt.Errorf("download %v %v", code, err)
		}
		if n := calls.Load(); n != 1 {
			return fmt.Errorf("Ready called %d times by the first download", n)
		}
		if _, err := os.Stat(filepath.Join(root, u, "Snapshot")); !os.IsNotExist(err) {
			return fmt.Errorf("leftover Snapshot still there after Ready: %v", err)
		}
		for _, dir := range []string{u + "/Snapshot", u + "/Snapshot/ab"} {
			if code, _, err := d.simple(devicelink.CreateDirectory, dir); err != nil || code != 0 {
				return fmt.Errorf("mkdir %s: %v %v", dir, code, err)
			}
		}
		code, err := d.upload(upFile{name: u + "/Snapshot/Status.plist", data: statusPlist(d.t, "finished")})
		if err != nil || code != 0 {
			return fmt.Errorf("upload %v %v", code, err)
		}
		moves := map[string]any{u + "/Snapshot/Status.plist": u + "/Status.plist"}
		if code, _, err := d.simple(devicelink.MoveItems, moves, map[string]any{}, 90.0); err != nil || code != 0 {
			return fmt.Errorf("move %v %v", code, err)
		}
		if code, _, err := d.simple(devicelink.RemoveItems, []any{u + "/Snapshot"}, map[string]any{}, 95.0); err != nil || code != 0 {
			return fmt.Errorf("remove %v %v", code, err)
		}
		return d.finish(0, "")
	})
	res, err := c.Backup(context.Background(), BackupOptions{Root: root, UDID: u,
		Ready: func(ctx context.Context) error {
			calls.Add(1)
			// What the store's clone guarantees once Ready returns: the folder exists.
			return os.MkdirAll(filepath.Join(root, u), 0o755)
		}})
	if werr := wait(); werr != nil {
		t.Fatalf("device: %v", werr)
	}
	if err != nil || res.SnapshotState != "finished" {
		t.Fatalf("Backup: %+v, %v", res, err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Ready called %d times in all", n)
	}
}

// TestBackupReadyFailure: a Ready that fails (the store's clone could not finish) ends the
// backup with Ready's classified error at the device's first folder message, and the host
// touches nothing in the folder: the leftover Snapshot stays, no Status.plist is read.
func TestBackupReadyFailure(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	leftover := filepath.Join(root, u, "Snapshot", "zz")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	cloneFailed := failure.New(failure.NoSpace, errors.New("clone: no space left on device"))
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		if _, err := d.expectBackup(); err != nil {
			return err
		}
		// The host never answers this one: it stops at Ready's error.
		if err := d.send(devicelink.CreateDirectory, u+"/Snapshot"); err != nil {
			return err
		}
		go drain(d.conn)
		return nil
	})
	calls := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a host that ignores Ready waits for more
	defer cancel()
	_, err := c.Backup(ctx, BackupOptions{Root: root, UDID: u,
		Ready: func(ctx context.Context) error { calls++; return cloneFailed }})
	if werr := wait(); werr != nil {
		t.Fatalf("device: %v", werr)
	}
	if !errors.Is(err, failure.NoSpace) || calls != 1 {
		t.Fatalf("Backup = %v after %d Ready calls; want the clone's NoSpace after 1", err, calls)
	}
	if _, err := os.Stat(leftover); err != nil {
		t.Errorf("folder touched after Ready failed: %v", err)
	}
}
