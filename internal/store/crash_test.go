//go:build unix

package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The crash test kills a real process with SIGKILL at many points of a backup run — while the
// staging folder is cloned, while the engine writes, while the backup is verified and at every
// step of the commit — then checks what recovery makes of the leftovers.

const (
	crashSeed  = 7
	crashFiles = 30
)

// crashBase builds a store with two committed backups and returns the device (in the state of
// the third run), the committed hashes by ID and the hash the third backup has when it commits.
func crashBase(t *testing.T, dir string) (*fakeDevice, map[string]string) {
	t.Helper()
	s := openStore(t, dir, testOptions(&fakeClock{t: epoch, step: time.Hour}))
	dev := newFakeDevice(testUDID, crashFiles, 800, crashSeed)
	runBackup(t, s, dev)
	dev.change(10)
	runBackup(t, s, dev)
	dev.change(10)
	return dev, committedHashes(t, s, testUDID)
}

// crashRun is the run that gets killed: Begin, engine writes, Commit. Kind "full" is a forced
// full backup (the fresh commit of fullcommit.go, which appends to the content index while it
// lists), "incremental" an incremental one, and "prepared" an incremental one preceded by
// PrepareNext (next.go), which Begin then takes.
func crashRun(dir, kind string, hook func(string)) error {
	dev := newFakeDevice(testUDID, crashFiles, 800, crashSeed)
	dev.change(10)
	dev.change(10)
	opts := testOptions(&fakeClock{t: epoch.Add(240 * time.Hour), step: time.Hour})
	opts.hook = hook
	s, err := Open(context.Background(), dir, opts)
	if err != nil {
		return err
	}
	if kind == "prepared" {
		if _, err := s.PrepareNext(context.Background(), testUDID); err != nil {
			return err
		}
	}
	r, err := s.Begin(context.Background(), testUDID, BeginOptions{Full: kind == "full"})
	if err != nil {
		return err
	}
	if err := dev.backup(r.Root(), hook); err != nil {
		return err
	}
	_, err = r.Commit(context.Background(), CommitMeta{})
	return err
}

// TestCrashHelper is the child process of TestCrashAtManyPoints.
func TestCrashHelper(t *testing.T) {
	dir, at := os.Getenv("SNAPBACK_CRASH_DIR"), os.Getenv("SNAPBACK_CRASH_AT")
	if dir == "" {
		t.Skip("helper process for TestCrashAtManyPoints")
	}
	k, _ := strconv.Atoi(at)
	n := 0
	err := crashRun(dir, os.Getenv("SNAPBACK_CRASH_KIND"), func(string) {
		if n++; n == k {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCrashAtManyPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, kind := range []string{"incremental", "full", "prepared"} {
		// Reference run without a crash: the hook sequence, and the third backup's hash.
		refDir := t.TempDir()
		_, _ = crashBase(t, refDir)
		var points []string
		if err := crashRun(refDir, kind, func(p string) { points = append(points, p) }); err != nil {
			t.Fatal(err)
		}
		ref := openStore(t, refDir, testOptions(&fakeClock{t: epoch.Add(1000 * time.Hour), step: time.Hour}))
		refList := mustList(t, ref)
		thirdHash := hashTree(t, refList[len(refList)-1].Path)

		// Every distinct step, plus points spread evenly over the long clone and write phases.
		chosen := map[int]bool{}
		for i, p := range points {
			if i == 0 || p != points[i-1] || i == len(points)-1 || points[i+1] != p {
				chosen[i+1] = true
			}
		}
		for i := 1; i <= len(points); i += max(1, len(points)/16) {
			chosen[i] = true
		}
		if len(chosen) < 20 {
			t.Fatalf("only %d crash points in %d hook calls", len(chosen), len(points))
		}
		phases := map[string]int{}
		for k := range chosen {
			phases[points[k-1]]++
		}
		t.Logf("%d crash points over %d hook calls: %v", len(chosen), len(points), phases)

		for k := range chosen {
			t.Run(fmt.Sprintf("%s/%03d-%s", kind, k, points[k-1]), func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				dev, base := crashBase(t, dir)
				cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
				cmd.Env = append(os.Environ(), "SNAPBACK_CRASH_DIR="+dir, "SNAPBACK_CRASH_AT="+strconv.Itoa(k), "SNAPBACK_CRASH_KIND="+kind)
				out, err := cmd.CombinedOutput()
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("helper was not killed at point %d: %v\n%s", k, err, out)
				}

				s := openStore(t, dir, testOptions(&fakeClock{t: epoch.Add(500 * time.Hour), step: time.Hour}))
				for _, leftover := range []string{"staging", "journal.json", "lock"} {
					if exists(filepath.Join(dir, VersionsDirName, testUDID, leftover)) {
						t.Errorf("%s left after recovery", leftover)
					}
				}
				// A prepared folder survives only whole and marked.
				if _, ok := s.readNext(testUDID); !ok && exists(s.l.next(testUDID)) {
					t.Errorf("an unfinished prepared folder was left after recovery")
				}
				got := checkUnchanged(t, s, base, fmt.Sprintf("by the crash at %d (%s)", k, points[k-1]))
				list := mustList(t, s)
				latest := list[len(list)-1]
				switch len(list) {
				case len(base):
					if got[latest.ID] != base[latest.ID] {
						t.Errorf("latest is not the last complete backup")
					}
				case len(base) + 1:
					if got[latest.ID] != thirdHash {
						t.Errorf("latest after a completed commit differs from the backup that was committed")
					}
				default:
					t.Fatalf("%d snapshots after recovery, want %d or %d", len(list), len(base), len(base)+1)
				}
				if !latest.Latest || latest.Path != filepath.Join(dir, testUDID) {
					t.Errorf("newest record is not the latest folder: %+v", latest)
				}
				for _, sn := range list {
					if err := s.Verify(context.Background(), testUDID, sn.ID); err != nil {
						t.Errorf("Verify %s after recovery: %v", sn.ID, err)
					}
				}
				// The content index covers every committed file with its true sum, whatever
				// the killed run had appended to it.
				if rep, err := s.VerifyData(context.Background(), testUDID); err != nil || rep.Unindexed != 0 || len(rep.Damaged) != 0 {
					t.Errorf("verify --data after recovery: %+v, %v", rep, err)
				}
				// The next run succeeds and changes nothing committed.
				dev.change(10)
				runBackup(t, s, dev)
				checkUnchanged(t, s, got, "by the run after recovery")
			})
		}
	}
}
