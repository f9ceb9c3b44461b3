//go:build unix

package store

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/failure"
	"snapback/internal/testenv"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestCommitLayoutSharingAndSizes(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: epoch, step: time.Hour}
	s := openStore(t, dir, testOptions(clock))
	dev := newFakeDevice(testUDID, 40, 2000, 1)

	first := runBackup(t, s, dev) // into an empty staging folder: full, whatever Status.plist says
	if first.Kind != KindFull || first.Device.Name != "Test iPhone" || first.Encrypted {
		t.Fatalf("first record = %+v", first)
	}
	if !first.Latest || first.Path != filepath.Join(dir, testUDID) {
		t.Fatalf("first: latest=%v path=%s, want latest at %s", first.Latest, first.Path, filepath.Join(dir, testUDID))
	}
	if first.TotalSize != first.UniqueSize || first.FileCount != 40+4 {
		t.Fatalf("first: total %d unique %d files %d, want total == unique, 44 files", first.TotalSize, first.UniqueSize, first.FileCount)
	}
	unchanged := backupfmt.BlobPath(filepath.Join(dir, testUDID), backupfmt.FileID("HomeDomain", "Library/f000000"))
	before := inode(t, unchanged)

	// Change exactly one existing file so the old snapshot's own bytes are known.
	dev.gen++
	old := dev.files["Library/f000001"]
	dev.files["Library/f000001"] = dev.content()
	second := runBackup(t, s, dev)
	if second.ID <= first.ID {
		t.Fatalf("IDs not increasing: %s then %s", first.ID, second.ID)
	}
	snapDir := filepath.Join(dir, VersionsDirName, testUDID, "snapshots", first.ID)
	for _, p := range []string{snapDir, filepath.Join(snapDir, "Manifest.db"), filepath.Join(dir, VersionsDirName, "volume.json"),
		filepath.Join(dir, VersionsDirName, testUDID, "snapshots", second.ID+".json")} {
		if !exists(p) {
			t.Errorf("%s missing", p)
		}
	}
	for _, p := range []string{"staging", "journal.json", "lock"} {
		if exists(filepath.Join(dir, VersionsDirName, testUDID, p)) {
			t.Errorf("%s left behind after commit", p)
		}
	}
	if got := inode(t, unchanged); got != before {
		t.Errorf("unchanged blob in latest is a new inode: hard link not used")
	}
	if got := inode(t, backupfmt.BlobPath(snapDir, backupfmt.FileID("HomeDomain", "Library/f000000"))); got != before {
		t.Errorf("unchanged blob in snapshot does not share the latest's inode")
	}
	fi, _ := os.Stat(unchanged)
	if fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("committed blob mode %v, want read-only", fi.Mode().Perm())
	}

	list, err := s.List(testUDID)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %d, %v; want 2", len(list), err)
	}
	// The first snapshot alone holds the old version of f000001 and the old Manifest.db,
	// Status.plist and Manifest.plist (every run replaces them); Info.plist too.
	var meta int64
	for _, n := range []string{"Manifest.db", "Status.plist", "Manifest.plist", "Info.plist"} {
		fi, _ := os.Stat(filepath.Join(snapDir, n))
		meta += fi.Size()
	}
	if want := int64(len(old)) + meta; list[0].UniqueSize != want {
		t.Errorf("old snapshot unique size = %d, want %d (old file + replaced metadata)", list[0].UniqueSize, want)
	}
	if list[0].TotalSize != first.TotalSize {
		t.Errorf("old snapshot total = %d, want unchanged %d", list[0].TotalSize, first.TotalSize)
	}
	if list[1].UniqueSize >= list[1].TotalSize/2 {
		t.Errorf("latest unique %d of total %d: shared files counted as its own", list[1].UniqueSize, list[1].TotalSize)
	}
	if !list[1].Latest || list[0].Latest {
		t.Errorf("latest flags: %v %v", list[0].Latest, list[1].Latest)
	}
}

// The engine replaces the top-level plists and Manifest.db, like every blob, by writing a new
// file and renaming it. Do exactly that in a hard-linked staging folder and check that the
// committed latest backup did not change.
func TestRenameInStagingLeavesCommittedUnchanged(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: epoch, step: time.Hour}
	s := openStore(t, dir, testOptions(clock))
	dev := newFakeDevice(testUDID, 20, 1000, 2)
	runBackup(t, s, dev)
	latest := filepath.Join(dir, testUDID)
	want := hashTree(t, latest)

	r, err := s.Begin(context.Background(), testUDID, BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Method() != CloneHardlink {
		t.Skipf("filesystem clones by %s; this test is about hard links", r.Method())
	}
	for _, n := range []string{"Manifest.db", "Status.plist", "Info.plist", "Manifest.plist"} {
		if inode(t, filepath.Join(r.Dir(), n)) != inode(t, filepath.Join(latest, n)) {
			t.Fatalf("%s in staging is not a hard link of the latest", n)
		}
		if err := writeRenamed(filepath.Join(r.Dir(), n), []byte("replaced by the engine")); err != nil {
			t.Fatal(err)
		}
	}
	blob := backupfmt.BlobPath(r.Dir(), backupfmt.FileID("HomeDomain", "Library/f000003"))
	if err := writeRenamed(blob, []byte("new content")); err != nil {
		t.Fatal(err)
	}
	if got := hashTree(t, latest); got != want {
		t.Fatalf("latest backup changed when staging files were replaced by rename")
	}
	// An in-place write is what the read-only marking stops (for unprivileged processes).
	if os.Geteuid() != 0 {
		if f, err := os.OpenFile(filepath.Join(latest, "Info.plist"), os.O_WRONLY|os.O_TRUNC, 0); err == nil {
			f.Close()
			t.Fatal("committed Info.plist opened for writing in place")
		}
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := hashTree(t, latest); got != want {
		t.Fatalf("latest backup changed by Abort")
	}
}

func TestFiveMoreRunsKeepEarlierSnapshots(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: epoch, step: 24 * time.Hour}
	s := openStore(t, dir, testOptions(clock))
	dev := newFakeDevice(testUDID, 50, 1500, 3)
	want := map[string]string{}
	for run := 0; run < 6; run++ {
		if run > 0 {
			dev.change(10)
		}
		sn := runBackup(t, s, dev)
		want[sn.ID] = hashTree(t, sn.Path)
	}
	got := committedHashes(t, s, testUDID)
	if len(got) != 6 {
		t.Fatalf("%d snapshots listed, want 6", len(got))
	}
	for id, h := range want {
		if got[id] != h {
			t.Errorf("snapshot %s changed after later runs", id)
		}
	}
	for _, sn := range mustList(t, s) {
		if err := s.Verify(context.Background(), testUDID, sn.ID); err != nil {
			t.Errorf("Verify %s: %v", sn.ID, err)
		}
	}
}

func TestCommitRefusesIncompleteBackup(t *testing.T) {
	cases := map[string]func(t *testing.T, dir string){
		"snapshot not finished": func(t *testing.T, dir string) {
			writeRenamed(filepath.Join(dir, "Status.plist"), (&fakeDevice{}).status("uploading"))
		},
		"missing blob": func(t *testing.T, dir string) {
			os.Remove(backupfmt.BlobPath(dir, backupfmt.FileID("HomeDomain", "Library/f000002")))
		},
		"blob of wrong size": func(t *testing.T, dir string) {
			writeRenamed(backupfmt.BlobPath(dir, backupfmt.FileID("HomeDomain", "Library/f000002")), []byte("short"))
		},
		"other device": func(t *testing.T, dir string) {
			info, _ := backupfmt.Info{TargetIdentifier: "SOMEONE-ELSE", UniqueIdentifier: "SOMEONE-ELSE"}.Marshal()
			writeRenamed(filepath.Join(dir, "Info.plist"), info)
		},
		"no Manifest.db": func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "Manifest.db"))
		},
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, testOptions(&fakeClock{t: epoch, step: time.Hour}))
			dev := newFakeDevice(testUDID, 10, 500, 4)
			first := runBackup(t, s, dev)
			want := hashTree(t, first.Path)
			r, err := s.Begin(context.Background(), testUDID, BeginOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dev.change(20)
			if err := dev.backup(r.Root(), nil); err != nil {
				t.Fatal(err)
			}
			breakIt(t, r.Dir())
			_, err = r.Commit(context.Background(), CommitMeta{})
			var ve *VerifyError
			if !errors.Is(err, ErrInvalidBackup) || !errors.As(err, &ve) {
				t.Fatalf("Commit err = %v, want ErrInvalidBackup", err)
			}
			if err := r.Abort(); err != nil {
				t.Fatal(err)
			}
			if got := hashTree(t, first.Path); got != want {
				t.Fatal("latest changed by a refused commit")
			}
			if l := mustList(t, s); len(l) != 1 {
				t.Fatalf("%d snapshots after refused commit, want 1", len(l))
			}
			if exists(r.Root()) {
				t.Fatal("staging left after Abort")
			}
			runBackup(t, s, dev) // and the next run works
		})
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: epoch, step: time.Minute}
	s := openStore(t, dir, testOptions(clock))
	dev := newFakeDevice(testUDID, 5, 100, 5)
	runBackup(t, s, dev)
	ctx := context.Background()

	r, err := s.Begin(ctx, testUDID, BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Begin(ctx, testUDID, BeginOptions{})
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("second Begin err = %v, want ErrLocked by pid %d", err, os.Getpid())
	}
	if err := s.Delete(ctx, testUDID, "20260101-040000"); !errors.Is(err, ErrLocked) {
		t.Fatalf("Delete during a run: %v, want ErrLocked", err)
	}
	r.Abort()

	lockPath := filepath.Join(dir, VersionsDirName, testUDID, "lock")
	if exists(lockPath) {
		t.Fatal("lock holder note left after Abort")
	}
	// A stale note from a crashed run locks nothing: the kernel dropped its flock.
	if err := os.WriteFile(lockPath, []byte(`{"host":"nas.local","pid":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = s.Begin(ctx, testUDID, BeginOptions{})
	if err != nil {
		t.Fatalf("Begin over a dead run's lock note: %v", err)
	}
	r.Abort()

	// Another process holds the lock (flock(1) on the device folder): refused as busy,
	// until that process ends.
	testenv.RequireTool(t, "flock")
	cmd := exec.Command("flock", "-x", filepath.Join(dir, VersionsDirName, testUDID), "-c", "echo held; read x")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "held\n" {
		t.Fatalf("flock(1) said %q", line)
	}
	if _, err := s.Begin(ctx, testUDID, BeginOptions{}); !errors.Is(err, ErrLocked) || failure.ClassOf(err) != failure.DeviceBusy {
		t.Fatalf("Begin while another process holds the lock: %v, want ErrLocked (device busy)", err)
	}
	stdin.Close()
	cmd.Wait()
	r, err = s.Begin(ctx, testUDID, BeginOptions{})
	if err != nil {
		t.Fatalf("Begin after the other process ended: %v", err)
	}
	r.Abort()
}

func TestAdoptExistingBackupFolder(t *testing.T) {
	dir := t.TempDir()
	dev := newFakeDevice(testUDID, 10, 300, 6)
	// A backup made by Finder or idevicebackup2 before Snapback was pointed here.
	if err := dev.backup(dir, nil); err != nil {
		t.Fatal(err)
	}
	want := hashTree(t, filepath.Join(dir, testUDID))
	s := openStore(t, dir, testOptions(&fakeClock{t: epoch, step: time.Hour}))
	dev.change(20)
	runBackup(t, s, dev)
	l := mustList(t, s)
	if len(l) != 2 || l[0].Kind != KindAdopted {
		t.Fatalf("list = %+v, want the adopted folder then the new backup", l)
	}
	if got := hashTree(t, l[0].Path); got != want {
		t.Fatal("adopted backup changed")
	}
}

func TestRunEndsOnceAndFullRunStartsEmpty(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(&fakeClock{t: epoch, step: time.Hour}))
	dev := newFakeDevice(testUDID, 8, 300, 14)
	runBackup(t, s, dev)
	ctx := context.Background()
	r, err := s.Begin(ctx, testUDID, BeginOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(r.Dir()); len(entries) != 0 {
		t.Fatalf("full run's staging holds %d entries, want empty", len(entries))
	}
	if err := dev.backup(r.Root(), nil); err != nil {
		t.Fatal(err)
	}
	sn, err := r.Commit(ctx, CommitMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if sn.Kind != KindFull {
		t.Errorf("kind = %s, want full", sn.Kind)
	}
	if _, err := r.Commit(ctx, CommitMeta{}); !errors.Is(err, ErrRunFinished) {
		t.Errorf("second Commit: %v, want ErrRunFinished", err)
	}
	if err := r.Abort(); err != nil {
		t.Errorf("Abort after Commit: %v", err)
	}
	if l := mustList(t, s); len(l) != 2 || !l[1].Latest {
		t.Fatalf("after full run: %+v", l)
	}
}
