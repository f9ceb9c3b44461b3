package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/zeebo/xxh3"

	"snapback/internal/backupfmt"
)

// fakeDevice is a deterministic stand-in for a device's content. backup writes it into a
// staging root exactly as the engine does: only changed files, each as a new file renamed into
// place, Manifest.db built aside and renamed, Status.plist "finished" last.
type fakeDevice struct {
	udid  string
	files map[string][]byte // relativePath in HomeDomain → content
	rng   *rand.Rand
	gen   int
	size  int
}

func newFakeDevice(udid string, n, size int, seed uint64) *fakeDevice {
	d := &fakeDevice{udid: udid, files: map[string][]byte{}, rng: rand.New(rand.NewPCG(seed, 1)), size: size}
	for i := 0; i < n; i++ {
		d.files[fmt.Sprintf("Library/f%06d", i)] = d.content()
	}
	return d
}

func (d *fakeDevice) content() []byte {
	b := make([]byte, d.size/2+d.rng.IntN(d.size))
	for i := range b {
		b[i] = byte(d.rng.Uint32())
	}
	return b
}

// change modifies, adds and deletes about pct percent of the files each (at least one).
func (d *fakeDevice) change(pct float64) (changedBytes int64) {
	d.gen++
	names := d.names()
	k := max(1, int(float64(len(names))*pct/100))
	for i := 0; i < k; i++ {
		n := names[d.rng.IntN(len(names))]
		d.files[n] = d.content()
		changedBytes += int64(len(d.files[n]))
	}
	for i := 0; i < k; i++ {
		n := fmt.Sprintf("Library/g%03d-%06d", d.gen, i)
		d.files[n] = d.content()
		changedBytes += int64(len(d.files[n]))
	}
	for i := 0; i < k/2; i++ {
		delete(d.files, names[d.rng.IntN(len(names))])
	}
	return changedBytes
}

func (d *fakeDevice) names() []string {
	var out []string
	for n := range d.files {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// writeRenamed writes data to a temp file beside path and renames it over path, as the
// engine does: never an in-place write.
func writeRenamed(path string, data []byte) error {
	tmp := path + ".upload"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (d *fakeDevice) status(state string) []byte {
	b, err := backupfmt.Status{BackupState: "new", Date: time.Unix(1700000000+int64(d.gen), 0), IsFullBackup: false,
		SnapshotState: state, UUID: "00000000-0000-0000-0000-000000000000", Version: "3.3"}.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// backup writes the device's backup into root/<udid>/; hook (may be nil) is called per file.
func (d *fakeDevice) backup(root string, hook func(string)) error {
	if hook == nil {
		hook = func(string) {}
	}
	dir := filepath.Join(root, d.udid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeRenamed(filepath.Join(dir, backupfmt.StatusPlistName), d.status("uploading")); err != nil {
		return err
	}
	info, _ := backupfmt.Info{DeviceName: "Test iPhone", DisplayName: "Test iPhone", ProductType: "iPhone14,2",
		ProductVersion: "17.4", SerialNumber: "F00", TargetIdentifier: d.udid, UniqueIdentifier: d.udid, TargetType: "Device",
		ITunesVersion: "12.13", LastBackupDate: time.Unix(1700000000, 0)}.Marshal()
	if err := writeRenamed(filepath.Join(dir, backupfmt.InfoPlistName), info); err != nil {
		return err
	}
	hook("write")
	want := map[string]bool{}
	for _, n := range d.names() {
		id := backupfmt.FileID("HomeDomain", n)
		want[id] = true
		p := backupfmt.BlobPath(dir, id)
		if old, err := os.ReadFile(p); err == nil && string(old) == string(d.files[n]) {
			continue // unchanged: the device does not send it again
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := writeRenamed(p, d.files[n]); err != nil {
			return err
		}
		hook("write")
	}
	// Files the device no longer has are removed (DLMessageRemoveItems).
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || filepath.Dir(filepath.Dir(p)) != dir {
			return err
		}
		if backupfmt.ValidFileID(e.Name()) && !want[e.Name()] {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	tmpDB := filepath.Join(dir, "Manifest.db.new")
	os.Remove(tmpDB)
	w, err := backupfmt.CreateManifestDB(tmpDB)
	if err != nil {
		return err
	}
	for _, n := range d.names() {
		if err := w.Add(backupfmt.Record{FileID: backupfmt.FileID("HomeDomain", n), Domain: "HomeDomain", RelativePath: n,
			Flags: backupfmt.FlagFile, File: backupfmt.MBFile{Size: int64(len(d.files[n])), Mode: 0o100644}}); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpDB, filepath.Join(dir, backupfmt.ManifestDBName)); err != nil {
		return err
	}
	hook("write")
	mp, _ := backupfmt.Manifest{Version: "10.0", Date: time.Unix(1700000000, 0)}.Marshal()
	if err := writeRenamed(filepath.Join(dir, backupfmt.ManifestPlistName), mp); err != nil {
		return err
	}
	return writeRenamed(filepath.Join(dir, backupfmt.StatusPlistName), d.status(backupfmt.SnapshotFinished))
}

// countingOptions are testOptions whose hook counts the calls at point in n.
func countingOptions(clock *fakeClock, point string, n *int) Options {
	opts := testOptions(clock)
	opts.hook = func(p string) {
		if p == point {
			*n++
		}
	}
	return opts
}

// hashTree hashes every file name and content below dir (not times or modes): what
// "unchanged" means for a committed snapshot.
func hashTree(t testing.TB, dir string) string {
	t.Helper()
	h := sha256.New()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() {
			rel += "/"
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		t.Fatalf("hash %s: %v", dir, err)
	}
	sort.Strings(paths)
	for _, rel := range paths {
		fmt.Fprintf(h, "%s\n", rel)
		if rel[len(rel)-1] == '/' {
			continue
		}
		f, err := os.Open(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(h, f)
		f.Close()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fakeClock starts at a fixed instant and advances by step on every call.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) Now() time.Time { c.t = c.t.Add(c.step); return c.t }

var epoch = time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)

func testOptions(clock *fakeClock) Options {
	return Options{Now: clock.Now, CreateLocation: true, MinFreeBytes: -1, Fstab: "-", Known: "-"}
}

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// runBackup runs one complete backup of dev into s and returns its record.
func runBackup(t testing.TB, s *Store, dev *fakeDevice) Snapshot {
	t.Helper()
	return runBackupWith(t, s, dev, BeginOptions{})
}

// runBackupWith is runBackup with Begin's options.
func runBackupWith(t testing.TB, s *Store, dev *fakeDevice, opts BeginOptions) Snapshot {
	t.Helper()
	ctx := context.Background()
	r, err := s.Begin(ctx, dev.udid, opts)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := dev.backup(r.Root(), nil); err != nil {
		r.Abort()
		t.Fatalf("engine: %v", err)
	}
	snap, err := r.Commit(ctx, CommitMeta{})
	if err != nil {
		r.Abort()
		t.Fatalf("Commit: %v", err)
	}
	return snap
}

// checkUnchanged reports every snapshot of want (hashes by ID, from committedHashes) whose
// folder now hashes differently, saying by what; it returns the current hashes.
func checkUnchanged(t testing.TB, s *Store, want map[string]string, by string) map[string]string {
	t.Helper()
	got := committedHashes(t, s, testUDID)
	for id, h := range want {
		if got[id] != h {
			t.Errorf("snapshot %s changed %s", id, by)
		}
	}
	return got
}

// committedHashes hashes the folder of every committed snapshot by ID.
func committedHashes(t testing.TB, s *Store, udid string) map[string]string {
	t.Helper()
	list, err := s.List(udid)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	out := map[string]string{}
	for _, sn := range list {
		out[sn.ID] = hashTree(t, sn.Path)
	}
	return out
}

const testUDID = "00008110-000A1B2C3D4E5F60"

func mustList(t *testing.T, s *Store) []Snapshot {
	t.Helper()
	l, err := s.List(testUDID)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// hashFile reads through the buffer it is given: it allocates little per file, not a copy
// buffer of its own (io.CopyBuffer from an *os.File ignores the one it is given).
func TestHashFileUsesTheGivenBuffer(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	data := bytes.Repeat([]byte("snapback"), 40_000) // 320 KB: several reads
	if err := os.WriteFile(p, data, 0o444); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	want, n, err := hashFile(p, buf)
	if err != nil || n != int64(len(data)) || want != xxh3.Hash128(data) {
		t.Fatalf("hashFile = %v, %d, %v; want the content's hash and %d bytes", want, n, err, len(data))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const calls = 100
	for range calls {
		if _, _, err := hashFile(p, buf); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / calls; per > 8<<10 {
		t.Fatalf("hashFile allocated %d bytes a call; want far less than a copy buffer", per)
	}
}
