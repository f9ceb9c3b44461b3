package mobilebackup2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
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

// TestBackupEntryReady: the host waits for EntryReady of a top-level entry before it
// touches anything under it, and only then. The test's EntryReady does what the store's
// background clone does: it links the entry's committed files into place on demand. A host
// that moved, removed, listed or read in a prefix folder before asking would find it empty
// or have its move undone; one that asked for a folder the device only creates would make
// the device wait for the clone of folders it never uses.
func TestBackupEntryReady(t *testing.T) {
	root, committed := t.TempDir(), t.TempDir()
	u := testUDID
	// The latest backup the clone copies from: four prefix folders with a file each.
	for _, p := range []string{"ab", "cd", "ef", "gh", "ij"} {
		if err := os.MkdirAll(filepath.Join(committed, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(committed, p, p+"old"), []byte("old "+p), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	entryReady, asked := cloneOnDemand(committed, filepath.Join(root, u))
	var afterMkdir []string
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		if _, err := d.expectBackup(); err != nil {
			return err
		}
		for _, dir := range []string{u + "/Snapshot", u + "/Snapshot/ab", u + "/ab", u + "/cd"} {
			if code, _, err := d.simple(devicelink.CreateDirectory, dir); err != nil || code != 0 {
				return fmt.Errorf("mkdir %s: %v %v", dir, code, err)
			}
		}
		afterMkdir = asked()
		if code, err := d.upload(upFile{name: u + "/Snapshot/ab/abnew", data: []byte("new")},
			upFile{name: u + "/Snapshot/Status.plist", data: statusPlist(d.t, "finished")}); err != nil || code != 0 {
			return fmt.Errorf("upload %v %v", code, err)
		}
		moves := map[string]any{u + "/Snapshot/ab/abnew": u + "/ab/abnew", u + "/Snapshot/Status.plist": u + "/Status.plist"}
		if code, _, err := d.simple(devicelink.MoveItems, moves, map[string]any{}, 90.0); err != nil || code != 0 {
			return fmt.Errorf("move %v %v", code, err)
		}
		if code, _, err := d.simple(devicelink.RemoveItems, []any{u + "/cd/cdold"}, map[string]any{}, 92.0); err != nil || code != 0 {
			return fmt.Errorf("remove %v %v", code, err)
		}
		code, list, err := d.simple(devicelink.ContentsOfDirectory, u+"/ef")
		if err != nil || code != 0 {
			return fmt.Errorf("list %v %v", code, err)
		}
		if m, _ := list.(map[string]any); m["efold"] == nil {
			return fmt.Errorf("listing of ef = %v, want efold in it", list)
		}
		// Each folder is asked for once, whatever touches it after: a prefix folder (ab, a
		// second time here) and any other name (gh, twice).
		for _, f := range []string{"/gh/ghold", "/gh/ghold", "/ab/abold"} {
			got, code, err := d.download(u + f)
			if err != nil || code != 0 || string(got[u+f]) != "old "+f[1:3] {
				return fmt.Errorf("download %s: %q %v %v", f, got, code, err)
			}
		}
		// Straight into a prefix folder the device never created, which the clone has not
		// reached either: the host must ask before it opens the folder.
		if code, err := d.upload(upFile{name: u + "/ij/ijnew", data: []byte("new")}); err != nil || code != 0 {
			return fmt.Errorf("upload into ij %v %v", code, err)
		}
		if code, _, err := d.simple(devicelink.RemoveItems, []any{u + "/Snapshot"}, map[string]any{}, 95.0); err != nil || code != 0 {
			return fmt.Errorf("remove %v %v", code, err)
		}
		return d.finish(0, "")
	})
	var callsMu sync.Mutex
	calls := map[string]int{}
	counted := func(ctx context.Context, name string) error {
		callsMu.Lock()
		calls[name]++
		callsMu.Unlock()
		return entryReady(ctx, name)
	}
	backupCloned(t, c, root, false, counted, wait)
	for name, n := range calls {
		if n != 1 {
			t.Errorf("EntryReady(%q) called %d times, want once", name, n)
		}
	}
	if calls["ab"] == 0 || calls["gh"] == 0 {
		t.Errorf("EntryReady calls %v, want ab and gh among them", calls)
	}
	// The clone's workers finish the folders nobody asked for, as Commit waits for them.
	for _, p := range []string{"ab", "cd", "ef", "gh", "ij"} {
		if err := entryReady(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	// Only the folder created inside Snapshot asked: creating a top-level folder never waits.
	if !slices.Equal(afterMkdir, []string{"Snapshot"}) {
		t.Errorf("EntryReady by the CreateDirectory messages: %q, want only Snapshot", afterMkdir)
	}
	for p, want := range map[string]bool{"ab/abold": true, "ab/abnew": true, "cd/cdold": false, "ef/efold": true, "gh/ghold": true,
		"ij/ijold": true, "ij/ijnew": true} {
		if _, err := os.Stat(filepath.Join(root, u, p)); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", p, err == nil, want)
		}
	}
}

// TestBackupEntryReadyFailure: an EntryReady that fails (the clone of that folder failed)
// ends the backup with its error once the message that needed the folder is answered.
func TestBackupEntryReadyFailure(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	cloneFailed := failure.New(failure.NoSpace, errors.New("clone: no space left on device"))
	c, d := pair(t)
	wait := d.run(func(d *fakeDevice) error {
		if _, err := d.expectBackup(); err != nil {
			return err
		}
		if code, _, err := d.simple(devicelink.CreateDirectory, u+"/ab"); err != nil || code != 0 {
			return fmt.Errorf("mkdir %v %v", code, err)
		}
		code, _, err := d.simple(devicelink.RemoveItems, []any{u + "/ab/gone"}, map[string]any{}, 92.0)
		if err != nil || code == 0 {
			return fmt.Errorf("remove answered %v %v, want an error code", code, err)
		}
		go drain(d.conn)
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Backup(ctx, BackupOptions{Root: root, UDID: u,
		Ready: func(ctx context.Context) error { return os.MkdirAll(filepath.Join(root, u), 0o755) },
		EntryReady: func(ctx context.Context, name string) error {
			if name == "ab" {
				return cloneFailed
			}
			return nil
		}})
	if werr := wait(); werr != nil {
		t.Fatalf("device: %v", werr)
	}
	if !errors.Is(err, failure.NoSpace) {
		t.Fatalf("Backup = %v, want the clone's NoSpace", err)
	}
}

// cloneOnDemand returns an EntryReady that does what the store's background clone does:
// the first time a top-level entry is asked for that is a folder of committed (the latest
// backup), it links that folder's files into dst, after checking that the host has put
// nothing there yet; a host that touched the folder without asking is caught then. asked
// returns the entries asked for so far.
func cloneOnDemand(committed, dst string) (entryReady func(ctx context.Context, name string) error, asked func() []string) {
	var mu sync.Mutex
	var names []string
	entryReady = func(ctx context.Context, name string) error {
		mu.Lock()
		defer mu.Unlock()
		if slices.Contains(names, name) {
			return nil
		}
		names = append(names, name)
		files, err := os.ReadDir(filepath.Join(committed, name))
		if err != nil {
			return nil // Snapshot, Status.plist: not a folder of the latest backup
		}
		dir := filepath.Join(dst, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// The folder must still hold nothing the device put there: nothing touched it yet.
		if es, _ := os.ReadDir(dir); len(es) != 0 {
			return fmt.Errorf("%s touched before EntryReady: holds %d entries", name, len(es))
		}
		for _, f := range files {
			if err := os.Link(filepath.Join(committed, name, f.Name()), filepath.Join(dir, f.Name())); err != nil {
				return err
			}
		}
		return nil
	}
	return entryReady, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(names)
	}
}

// backupCloned runs a backup into root as into a store's clone: Ready makes the <UDID>
// folder, entryReady (cloneOnDemand's) answers EntryReady, direct sets DirectWrites. It then
// waits for the device's side (wait) and fails the test on either error.
func backupCloned(t *testing.T, c *Client, root string, direct bool, entryReady func(context.Context, string) error, wait func() error) {
	t.Helper()
	_, err := c.Backup(context.Background(), BackupOptions{Root: root, UDID: testUDID, DirectWrites: direct,
		Events:     NewEmitter(nil, nil),
		Ready:      func(ctx context.Context) error { return os.MkdirAll(filepath.Join(root, testUDID), 0o755) },
		EntryReady: entryReady})
	if werr := wait(); werr != nil {
		t.Fatalf("device: %v", werr)
	}
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
}
