package app

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/settings"
)

// The one orchestration against the simulated iPhone: a lower-case UDID backs up the
// device into its own folder at the location from the settings; the outcome names the
// committed latest folder, the snapshot, what was sent and the backup's size; the last
// backup time is then known from the commit, without reading the store again.
func TestBackupsRunAndLastBackupFromCommit(t *testing.T) {
	_, udid := startDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, loc := settingsAt(t, "")
	stores := &Stores{}
	if got := stores.LastBackup(ctx, cfg, udid); !got.IsZero() {
		t.Fatalf("last backup before any: %v", got)
	}
	b := &Backups{Settings: func() *settings.Settings { return cfg }, Stores: stores}

	if _, err := b.Run(ctx, BackupRequest{UDID: "0000-WRONG"}); !strings.Contains(failure.Text(err), "no such device") || failure.ClassOf(err) != failure.NotConnected {
		t.Fatalf("wrong UDID: %v", err)
	}
	if ents, _ := os.ReadDir(loc); len(ents) != 0 {
		t.Fatalf("a wrong UDID wrote %d entries into the location", len(ents))
	}

	out, err := b.Run(ctx, BackupRequest{UDID: strings.ToLower(udid)})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	if out.UDID != udid || out.Dir != filepath.Join(loc, udid) || out.Location != loc || out.Snapshot == "" ||
		out.Bytes <= 0 || out.Size < out.Bytes || out.Transport != settings.TransportUSB || out.Duration() <= 0 {
		t.Fatalf("outcome %+v", out)
	}
	if s, err := backupfmt.ReadStatus(filepath.Join(out.Dir, "Status.plist")); err != nil || s.SnapshotState != "finished" {
		t.Fatalf("%s: %+v %v", out.Dir, s, err)
	}
	if got := stores.LastBackup(ctx, cfg, udid); !got.Equal(out.Committed) {
		t.Fatalf("last backup %v, committed %v", got, out.Committed)
	}
	// A backup committed by another process (as `snapback backup` next to the daemon) counts
	// as the day's backup too: the cache notices that the latest backup was replaced. The
	// other process's clock runs an hour ahead so that the two commits differ.
	later := &Stores{Now: func() time.Time { return time.Now().Add(time.Hour) }}
	out2, err := (&Backups{Settings: b.Settings, Stores: later}).Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	if !out2.Committed.After(out.Committed) {
		t.Fatalf("second commit %v is not after the first %v", out2.Committed, out.Committed)
	}
	if got := stores.LastBackup(ctx, cfg, udid); !got.Equal(out2.Committed) {
		t.Fatalf("last backup %v after another process committed %v", got, out2.Committed)
	}
	out = out2
	// The content hashes taken while the files streamed in are the files' hashes: reading
	// everything back finds no damage and nothing unindexed.
	st, err := stores.ForDevice(ctx, cfg, udid, "")
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := st.VerifyData(ctx, udid); err != nil || rep.Files == 0 || rep.Unindexed != 0 || len(rep.Damaged) != 0 {
		t.Fatalf("verify --data after two backups: %+v %v", rep, err)
	}
	// The cache answers without the store: with the location gone it still knows, while a
	// fresh cache (which must read the store) does not.
	if err := os.Rename(loc, loc+".away"); err != nil {
		t.Fatal(err)
	}
	if got := stores.LastBackup(ctx, cfg, udid); !got.Equal(out.Committed) {
		t.Fatalf("cached last backup %v, want %v", got, out.Committed)
	}
	if got := (&Stores{}).LastBackup(ctx, cfg, udid); !got.IsZero() {
		t.Fatalf("a fresh cache found a backup at a missing location: %v", got)
	}
}

// A backup waiting for the device (Back Up Now right after a backup) stops the upkeep's
// scrub but not the preparation of the next backup's folder, which that backup needs; the
// stopped scrub is still the day's to do, so the upkeep after the waiting backup finds the
// damage it would have found.
func TestWaitingBackupStopsTheScrubNotThePreparation(t *testing.T) {
	_, udid := startDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, _ := settingsAt(t, "")
	b := &Backups{Settings: func() *settings.Settings { return cfg }, Stores: &Stores{},
		Scrub: &store.ScrubBudget{MaxBytes: 1 << 40, MaxPercent: 100, Every: 24 * time.Hour}}
	first, err := b.Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	first.Upkeep(ctx, ctx)
	rotOneBlob(t, first.Dir)
	second, err := b.Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	hurry, waiting := context.WithCancel(ctx)
	waiting() // another backup of the device is queued
	if u := second.Upkeep(ctx, hurry); u.Damaged != 0 {
		t.Fatalf("the scrub ran although a backup was waiting: %d damaged", u.Damaged)
	}
	prepared := filepath.Join(filepath.Dir(second.Dir), "Snapback.Versions", udid, "next", "prepared.json")
	if _, err := os.Stat(prepared); err != nil {
		t.Fatalf("the next backup's folder was not prepared: %v", err)
	}
	third, err := b.Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	if u := third.Upkeep(ctx, ctx); u.Damaged == 0 {
		t.Fatal("the scrub after the waiting backup did not run (or found nothing)")
	}
}

// rotOneBlob flips one byte of one blob of the backup folder dir in place and puts its
// times and mode back, as a failing disk would.
func rotOneBlob(t *testing.T, dir string) {
	t.Helper()
	var blob string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && blob == "" && d.Type().IsRegular() && len(filepath.Base(filepath.Dir(p))) == 2 {
			if fi, _ := d.Info(); fi != nil && fi.Size() > 0 {
				blob = p
			}
		}
		return nil
	})
	if blob == "" {
		t.Fatal("no blob in the backup")
	}
	fi, _ := os.Stat(blob)
	data, _ := os.ReadFile(blob)
	data[len(data)/2] ^= 0x40
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(blob, fi.ModTime(), fi.ModTime())
	os.Chmod(blob, fi.Mode())
}

// Bit rot in the latest backup is found by the scrub that follows the next commit (in the
// outcome's upkeep, after the result), reported, and the backup after that is a full one
// that verifies clean.
func TestScrubAfterCommitFindsBitRot(t *testing.T) {
	_, udid := startDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, _ := settingsAt(t, "")
	b := &Backups{Settings: func() *settings.Settings { return cfg }, Stores: &Stores{},
		Scrub: &store.ScrubBudget{MaxBytes: 1 << 40, MaxPercent: 100}}
	first, err := b.Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	if u := first.Upkeep(ctx, ctx); u.Damaged != 0 {
		t.Fatalf("first backup: damaged %d", u.Damaged)
	}
	rotOneBlob(t, first.Dir)

	second, err := b.Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	if u := second.Upkeep(ctx, ctx); u.Damaged == 0 {
		t.Fatalf("the scrub after the second backup found nothing: %+v", second)
	}
	third, err := b.Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	if !third.Full {
		t.Fatal("the backup after damage in the latest backup was not a full one")
	}
	// The older snapshots keep their damaged copy (nothing can repair them); the new latest
	// backup holds none of it.
	st, err := b.Stores.ForDevice(ctx, cfg, udid, "")
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := st.VerifyData(ctx, udid)
	if len(rep.Damaged) == 0 {
		t.Fatal("verify --data no longer sees the damaged copy in the older snapshots")
	}
	if !slices.Contains(rep.Damaged[0].Snapshots, first.Snapshot) {
		t.Fatalf("damage %+v does not name the first snapshot %s", rep.Damaged[0], first.Snapshot)
	}
	for _, d := range rep.Damaged {
		if slices.Contains(d.Snapshots, third.Snapshot) {
			t.Fatalf("the new latest backup %s still holds the damaged %s", third.Snapshot, d.Path)
		}
	}
}

// The first backup of a device is not scrubbed right away (its files were hashed as they
// were written; reading them back now would only read the page cache); the next backup's
// scrub runs as scheduled and reads the store.
func TestFirstBackupDefersScrub(t *testing.T) {
	_, udid := startDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, loc := settingsAt(t, "")
	b := &Backups{Settings: func() *settings.Settings { return cfg }, Stores: &Stores{},
		Scrub: &store.ScrubBudget{MaxBytes: 1 << 40, MaxPercent: 100, Every: 24 * time.Hour}}
	first, err := b.Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	state := filepath.Join(loc, store.VersionsDirName, udid, "scrub.json")
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the first backup %s was scrubbed right away (scrub state: %v)", first.Snapshot, err)
	}
	second, err := b.Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	// The scrub comes after the result (issue #16): Run has not read the store yet.
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the second backup was scrubbed before its result was out (scrub state: %v)", err)
	}
	second.Upkeep(ctx, ctx)
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("the second backup's upkeep did not scrub: %v", err)
	}
}

// settingsAt parses settings whose location is a new folder (returned) followed by the
// settings text more.
func settingsAt(t *testing.T, more string) (*settings.Settings, string) {
	t.Helper()
	loc := filepath.Join(t.TempDir(), "loc")
	if err := os.Mkdir(loc, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := settings.Parse([]byte("location: " + loc + "\n" + more))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, loc
}

// Backups.Run leaves preparing the next backup's folder to its caller (Outcome.Upkeep), so
// that the result is reported first; once called, the next run starts from that folder.
func TestRunLeavesThePreparationToTheCaller(t *testing.T) {
	_, udid := startDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, loc := settingsAt(t, "")
	b := &Backups{Settings: func() *settings.Settings { return cfg }, Stores: &Stores{}}
	next := filepath.Join(loc, store.VersionsDirName, udid, "next", udid)
	out, err := b.Run(ctx, BackupRequest{UDID: udid})
	if err != nil {
		t.Fatal(failure.Text(err))
	}
	if _, err := os.Stat(next); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Run prepared the next folder before returning its outcome (%v)", err)
	}
	if out.Upkeep == nil {
		t.Fatal("a committed run returned no Upkeep")
	}
	out.Upkeep(ctx, ctx)
	prepared, err := os.Stat(next)
	if err != nil {
		t.Fatalf("Upkeep prepared no folder: %v", err)
	}
	if _, err := b.Run(ctx, BackupRequest{UDID: udid}); err != nil {
		t.Fatal(failure.Text(err))
	}
	if latest, err := os.Stat(filepath.Join(loc, udid)); err != nil || !os.SameFile(latest, prepared) {
		t.Errorf("the second backup did not start from the prepared folder (%v)", err)
	}
	if failed, err := b.Run(ctx, BackupRequest{UDID: "0000-WRONG"}); err == nil || failed.Upkeep != nil {
		t.Errorf("a failed run offered a preparation (%v)", err)
	}
}
