//go:build linux

package offsite_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"snapback/internal/offsite"
	"snapback/internal/store"
	"snapback/internal/testenv"
	"snapback/settings/settingstest"
)

// Environment of the helper process (never a secret: the password comes on its stdin).
const (
	helperEnv     = "SNAPBACK_OFFSITE_TEST_HELPER"
	helperRepo    = "SNAPBACK_OFFSITE_TEST_REPO"
	helperLoc     = "SNAPBACK_OFFSITE_TEST_LOCATION"
	helperUDID    = "SNAPBACK_OFFSITE_TEST_UDID"
	helperLimitKB = "SNAPBACK_OFFSITE_TEST_LIMIT"
)

// TestPushHelperProcess is not a test: it is the process TestKilledPushResumes kills. It
// pushes the latest backup of a store with the password read from its stdin, and reports
// restic's PID and progress on stdout.
func TestPushHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestKilledPushResumes")
	}
	pw, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		fmt.Println("no password:", err)
		os.Exit(2)
	}
	pw = strings.TrimSuffix(pw, "\n")
	repo := os.Getenv(helperRepo)
	limit, _ := strconv.Atoi(os.Getenv(helperLimitKB))
	ctx := context.Background()
	st, err := store.Open(ctx, os.Getenv(helperLoc), store.Options{})
	if err != nil {
		fmt.Println("store:", err)
		os.Exit(2)
	}
	secrets := settingstest.NewSecrets(map[string]string{offsite.PasswordAccount(repo): pw})
	r := &offsite.Restic{Repository: repo, Password: offsite.KeychainPassword(secrets, repo), LimitUploadKiB: limit}
	var once sync.Once
	_, err = offsite.Push(ctx, r, st, os.Getenv(helperUDID), offsite.PushOptions{Events: func(ev offsite.Event) {
		if ev.Kind != offsite.EventStatus {
			return
		}
		once.Do(func() {
			for _, pid := range resticChildren(t, os.Getpid()) {
				fmt.Printf("restic %d\n", pid)
			}
		})
		fmt.Printf("status %d %d\n", ev.Status.BytesDone, ev.Status.TotalBytes)
	}})
	fmt.Println("done", err)
	os.Exit(0)
}

// Killing the process that drives a push (SIGKILL, mid-upload, with restic's lock still in
// the repository) and pushing again completes the upload, and the repository stays
// consistent (`restic check`). The stale lock of the dead restic is removed by itself.
func TestKilledPushResumes(t *testing.T) {
	testenv.RequireTool(t, "restic")
	isolateHome(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := startDevice(t, 60, 12<<20, 23)
	sn := d.backUp(t, ctx)
	repo := filepath.Join(t.TempDir(), "repo")
	pw := randomPassword(t)
	secrets := settingstest.NewSecrets(map[string]string{offsite.PasswordAccount(repo): pw})
	r := &offsite.Restic{Repository: repo, Password: offsite.KeychainPassword(secrets, repo)}
	if err := r.Init(ctx, pw); err != nil {
		t.Fatal(err)
	}

	// The upload is slowed to 1 MiB/s (restic --limit-upload) so that it is surely killed
	// half-way.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPushHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperRepo+"="+repo, helperLoc+"="+d.st.Location(),
		helperUDID+"="+d.udid, helperLimitKB+"=1024")
	cmd.Stdin = strings.NewReader(pw + "\n")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	resticPID := 0
	sc := bufio.NewScanner(out)
	var seen []string
	for sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		var a, b int64
		if _, err := fmt.Sscanf(line, "restic %d", &a); err == nil {
			resticPID = int(a)
		}
		if _, err := fmt.Sscanf(line, "status %d %d", &a, &b); err == nil && a > 1<<20 && a < b/2 {
			break // mid-upload
		}
		if strings.HasPrefix(line, "done") {
			t.Fatalf("the push finished before it could be killed: %v", seen)
		}
	}
	if resticPID == 0 {
		t.Fatalf("the helper never reported restic running: %v", seen)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	cmd.Wait()
	t.Logf("killed the push after %s", seen[len(seen)-1])

	// restic must not go on uploading for a dead Snapback: it dies on its next progress
	// write to the closed pipe.
	if !testenv.Eventually(20*time.Second, func() bool {
		if syscall.Kill(resticPID, 0) != nil {
			return true
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", resticPID))
		return strings.Contains(string(st), ") Z ") // a zombie until its parent (init) reaps it
	}) {
		t.Fatalf("restic %d still runs 20 s after its driver was killed", resticPID)
	}
	locks, _ := os.ReadDir(filepath.Join(repo, "locks"))
	if snaps, err := r.Snapshots(ctx, d.udid); err != nil || len(snaps) != 0 {
		t.Fatalf("after the kill: %d snapshots, %v; want none (the upload was interrupted)", len(snaps), err)
	}
	if len(locks) == 0 {
		t.Fatal("the killed restic left no lock: the test did not interrupt an upload")
	}
	t.Logf("after the kill: %d stale lock(s) in the repository", len(locks))

	res, err := offsite.Push(ctx, r, d.st, d.udid, offsite.PushOptions{})
	if err != nil {
		t.Fatalf("push after the kill: %v", err)
	}
	if res.Snapshot.SnapbackID != sn.ID {
		t.Fatalf("push after the kill: %+v", res)
	}
	t.Logf("the push after the kill added %d bytes for a %d byte backup", res.Summary.DataAdded, sn.TotalSize)
	out2, err := r.Check(ctx, offsite.CheckOptions{ReadDataSubset: "100%"})
	if err != nil {
		t.Fatalf("restic check after the kill: %v\n%s", err, out2)
	}
	if locks, _ := os.ReadDir(filepath.Join(repo, "locks")); len(locks) != 0 {
		t.Errorf("%d locks left in the repository", len(locks))
	}
	if snaps, err := r.Snapshots(ctx, d.udid); err != nil || len(snaps) != 1 || snaps[0].SnapbackID != sn.ID {
		t.Fatalf("after the second push: %+v, %v", snaps, err)
	}
	if views, _ := os.ReadDir(filepath.Join(d.st.Location(), "Snapback.Versions", d.udid, "views-offsite")); len(views) != 0 {
		t.Errorf("the killed push's view is still there (%d entries)", len(views))
	}
	// And it restores as a verified backup.
	rr, err := offsite.Restore(ctx, r, d.udid, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	compareTrees(t, d.st.LatestDir(d.udid), rr.Dir)
}
