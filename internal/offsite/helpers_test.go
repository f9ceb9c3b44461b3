package offsite_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/devicesim/simtest"
	"snapback/internal/engine"
	"snapback/internal/store"
	"snapback/internal/testenv"
)

// device is one simulated iPhone on a real usbmuxd socket, backed up into a real store.
type device struct {
	udid  string
	name  string
	agent *backupsim.Device
	st    *store.Store
}

// startDevice serves a simulated iPhone (iOS 17, passcode typed after 20 ms) with files
// files of about size bytes in total, and opens a store in a temporary location.
func startDevice(t *testing.T, files int, size int64, seed int64) *device {
	t.Helper()
	id := devicesim.DefaultIdentity(0)
	_, agent := simtest.AddDevice(t, simtest.Start(t), devicesim.DeviceConfig{Identity: id, USB: true, BatteryLevel: 80}, backupsim.Options{
		Files: files, TotalSize: size, Seed: seed, PasscodeDelay: 20 * time.Millisecond,
	})
	loc := filepath.Join(t.TempDir(), "backups")
	if err := os.Mkdir(loc, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &device{udid: id.UDID, name: id.DeviceName, agent: agent, st: st}
}

// backUp runs one real backup of the device into the store and commits it.
func (d *device) backUp(t *testing.T, ctx context.Context) store.Snapshot {
	t.Helper()
	run, err := d.st.Begin(ctx, d.udid, store.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := engine.Backup(ctx, engine.Request{UDID: d.udid, Root: run.Root(), LockRetry: 10 * time.Millisecond})
	if err != nil {
		run.Abort()
		t.Fatal(err)
	}
	kind := store.KindIncremental
	if res.Backup.FullBackup {
		kind = store.KindFull
	}
	sn, err := run.Commit(ctx, store.CommitMeta{Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

// startRESTServer serves a restic REST repository over loopback with Debian's rclone
// (`rclone serve restic`) and returns its restic address.
func startRESTServer(t *testing.T) string {
	t.Helper()
	bin := testenv.RequireTool(t, "rclone")
	dir := t.TempDir()
	cmd := exec.Command(bin, "serve", "restic", "--config", filepath.Join(dir, "rclone.conf"),
		"--addr", "127.0.0.1:0", filepath.Join(dir, "repo"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`Serving restic REST API on (http://127\.0\.0\.1:\d+/)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		return "rest:" + a
	case <-time.After(30 * time.Second):
		t.Fatal("rclone serve restic did not start within 30 s")
	}
	return ""
}

func randomPassword(t *testing.T) string {
	b := make([]byte, 12)
	rand.Read(b)
	return "Pw-" + hex.EncodeToString(b)
}

// resticChildren returns the PIDs of restic processes whose parent is this process.
func resticChildren(t *testing.T, parent int) []int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so split after the last ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(restic") {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(parent) {
			out = append(out, pid)
		}
	}
	return out
}

// filesContaining returns the files below the roots whose bytes contain secret.
func filesContaining(t *testing.T, secret string, roots ...string) []string {
	t.Helper()
	var hits []string
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err == nil && bytes.Contains(b, []byte(secret)) {
				hits = append(hits, p)
			}
			return nil
		})
	}
	return hits
}

// compareTrees fails unless a and b hold the same files with the same bytes.
func compareTrees(t *testing.T, a, b string) int {
	t.Helper()
	list := func(root string) map[string]string {
		m := map[string]string{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			m[rel] = p
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	la, lb := list(a), list(b)
	if len(la) != len(lb) {
		t.Errorf("%s holds %d files, %s holds %d", a, len(la), b, len(lb))
	}
	for rel, pa := range la {
		pb, ok := lb[rel]
		if !ok {
			t.Errorf("%s is missing from %s", rel, b)
			continue
		}
		x, _ := os.ReadFile(pa)
		y, _ := os.ReadFile(pb)
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs (%d vs %d bytes)", rel, len(x), len(y))
		}
	}
	return len(la)
}

// changedBytes is what the newer snapshot folder holds that the older one does not hold
// under the same name with the same bytes: new and modified files, Manifest.db, plists.
func changedBytes(t *testing.T, older, newer string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(newer, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(newer, p)
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if oi, err := os.Stat(filepath.Join(older, rel)); err == nil && oi.Size() == fi.Size() {
			x, _ := os.ReadFile(p)
			y, _ := os.ReadFile(filepath.Join(older, rel))
			if bytes.Equal(x, y) {
				return nil
			}
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
