//go:build unix

package store

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The scrub streams the store one directory at a time and looks files up in one bucket of
// the content index at a time: a whole pass reads every distinct file once with none
// unindexed, daily slices within budget go round the store in path order and find damage
// in blobs of any prefix folder within one cycle, a position saved by an older version (an
// inode number) starts over, the split index is removed afterwards, and an index in an
// unknown format is refused by name.
func TestScrubStreamsAcrossBuckets(t *testing.T) {
	ctx := context.Background()
	s := scrubbedStore(t, 300, 31, 4, 10)
	full, err := s.VerifyData(ctx, testUDID)
	if err != nil || full.Files < 300 || full.Unindexed != 0 {
		t.Fatalf("verify --data: %+v, %v", full, err)
	}
	devDir := s.l.device(testUDID)
	leftovers := func() {
		t.Helper()
		if m, _ := filepath.Glob(filepath.Join(devDir, ".scrub-index-*")); len(m) > 0 {
			t.Fatalf("split index left behind: %v", m)
		}
	}
	leftovers()

	// An older version's position (an inode number) starts over at the first path.
	os.WriteFile(s.l.scrubState(testUDID), []byte(`{"nextInode": 123456789, "cycle": 4}`), 0o644)
	rep, err := s.Scrub(ctx, testUDID, ScrubBudget{MaxPercent: 100})
	if err != nil || rep.Files != full.Files || rep.Bytes != full.Bytes || rep.Unindexed != 0 || !rep.Complete {
		t.Fatalf("whole-store scrub: %+v, %v; want %d files, %d bytes, none unindexed, complete", rep, err, full.Files, full.Bytes)
	}
	leftovers()

	// Damage in the first, a middle and the last prefix folder of the latest backup.
	list := mustList(t, s)
	latest := list[len(list)-1].Path
	var prefixes []string
	ents, _ := os.ReadDir(latest)
	for _, e := range ents {
		if e.IsDir() && len(e.Name()) == 2 {
			prefixes = append(prefixes, e.Name())
		}
	}
	if len(prefixes) < 10 {
		t.Fatalf("only %d prefix folders", len(prefixes))
	}
	var want []string
	for _, p := range []string{prefixes[0], prefixes[len(prefixes)/2], prefixes[len(prefixes)-1]} {
		blobs, _ := os.ReadDir(filepath.Join(latest, p))
		rel := p + "/" + blobs[0].Name()
		flipByte(t, filepath.Join(latest, rel))
		want = append(want, rel)
	}
	slices.Sort(want)

	budget := full.Bytes / 7
	var read int64
	found := map[string]bool{}
	for day := 0; day < 20 && len(found) < len(want); day++ {
		rep, _ := s.Scrub(ctx, testUDID, ScrubBudget{MaxBytes: budget})
		if rep.Bytes > budget && rep.Files > 1 {
			t.Fatalf("day %d: read %d bytes on a budget of %d", day, rep.Bytes, budget)
		}
		if rep.Files == 0 {
			t.Fatalf("day %d: the slice read nothing", day)
		}
		t.Logf("day %d: %d files %d bytes complete %v damaged %d", day, rep.Files, rep.Bytes, rep.Complete, len(rep.Damaged))
		read += rep.Bytes
		for _, d := range rep.Damaged {
			found[d.Path] = true
		}
	}
	got := make([]string, 0, len(found))
	for p := range found {
		got = append(got, p)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("scrub found damage in %v, want %v", got, want)
	}
	// The slices went on where they stopped: all three within one cycle plus a slice.
	if read > full.Bytes+budget {
		t.Errorf("read %d bytes to find damage in a store of %d: slices overlap", read, full.Bytes)
	}
	leftovers()

	// A symlink in place of a blob is reported, not followed.
	oldest := list[0].Path
	blobs, _ := os.ReadDir(filepath.Join(oldest, prefixes[1]))
	link := prefixes[1] + "/" + blobs[0].Name()
	os.Chmod(filepath.Join(oldest, prefixes[1]), 0o755)
	if err := os.Remove(filepath.Join(oldest, link)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(oldest, link)); err != nil {
		t.Fatal(err)
	}
	rep, _ = s.VerifyData(ctx, testUDID)
	if i := slices.IndexFunc(rep.Damaged, func(d DamagedFile) bool { return d.Path == link }); i < 0 ||
		!strings.Contains(rep.Damaged[i].Reason, "symlink") || !slices.Equal(rep.Damaged[i].Snapshots, []string{list[0].ID}) {
		t.Errorf("a symlink in %s: damage %+v", list[0].ID, rep.Damaged)
	}

	// The index's header is still checked.
	hp := s.l.hashes(testUDID)
	b, _ := os.ReadFile(hp)
	os.WriteFile(hp, append([]byte("snapback-hashes 9 other\n"), b[strings.IndexByte(string(b), '\n')+1:]...), 0o644)
	s.now = func() time.Time { return epoch.Add(1000 * 24 * time.Hour) }
	if _, err := s.Scrub(ctx, testUDID, ScrubBudget{MaxBytes: budget}); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Fatalf("scrub with an index of another format: %v, want unknown format", err)
	}
	leftovers()
}

// A percentage budget is taken from the snapshot records, not from a walk that stats every
// stored file: each day's slice is at most that share of the store's distinct bytes (what
// verify --data reads), and the slices still go round the whole store in about as many days
// as the percentage says. 100% is the whole store at once.
func TestScrubPercentFromRecords(t *testing.T) {
	ctx := context.Background()
	s := scrubbedStore(t, 400, 17, 5, 15)
	full, err := s.VerifyData(ctx, testUDID)
	if err != nil {
		t.Fatal(err)
	}
	var read int64
	days := 0
	for complete := false; !complete; days++ {
		// 10 days at least; a slice also ends before a file that does not fit (each
		// snapshot's Manifest.db is a tenth of the budget here), and the estimate errs low.
		if days > 14 {
			t.Fatalf("10%% a day has not gone round the store in %d days (%d of %d bytes)", days, read, full.Bytes)
		}
		rep, err := s.Scrub(ctx, testUDID, ScrubBudget{MaxPercent: 10, Every: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Bytes > full.Bytes/10 && rep.Files > 1 {
			t.Fatalf("day %d read %d bytes, over 10%% of the store's %d", days, rep.Bytes, full.Bytes)
		}
		read += rep.Bytes
		complete = rep.Complete
	}
	if read < full.Bytes {
		t.Errorf("a cycle read %d of the store's %d bytes", read, full.Bytes)
	}
	rep, err := s.Scrub(ctx, testUDID, ScrubBudget{MaxPercent: 100})
	if err != nil || rep.Bytes != full.Bytes || !rep.Complete {
		t.Fatalf("100%%: %+v, %v; want all %d bytes", rep, err, full.Bytes)
	}
}

// scrubbedStore is a store with backups snapshots of a files-file device (seed), each after
// the first with pct percent churn; its clock moves a day and an hour per reading, so every
// scrub is due.
func scrubbedStore(t *testing.T, files int, seed uint64, backups int, pct float64) *Store {
	t.Helper()
	s := openStore(t, t.TempDir(), testOptions(&fakeClock{t: epoch, step: 25 * time.Hour}))
	dev := newFakeDevice(testUDID, files, 900, seed)
	runBackup(t, s, dev)
	for range backups - 1 {
		dev.change(pct)
		runBackup(t, s, dev)
	}
	return s
}
