package app

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"snapback/internal/failure"
	"snapback/settings"
)

// The settings' scrub key decides how much the scrub after a commit reads: 100% a day reads
// the whole store at once, 0 turns it off (nothing read, no scrub position kept).
func TestScrubFollowsSettings(t *testing.T) {
	_, udid := startDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	scrubState := func(loc string) (cycle int, found bool) {
		var path string
		filepath.WalkDir(loc, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == "scrub.json" {
				path = p
			}
			return nil
		})
		if path == "" {
			return 0, false
		}
		var st struct{ Cycle int }
		data, err := os.ReadFile(path)
		if err != nil || json.Unmarshal(data, &st) != nil {
			t.Fatalf("scrub state %s: %v", path, err)
		}
		return st.Cycle, true
	}
	backup := func(scrub string) string {
		cfg, loc := settingsAt(t, scrub)
		b := &Backups{Settings: func() *settings.Settings { return cfg }, Stores: &Stores{}}
		// Two backups: the scrub after a device's first one is deferred (its files were
		// just hashed as they were written; TestFirstBackupDefersScrub).
		// The scrub runs in the upkeep after each result, as the CLI and the daemon run it.
		for range 2 {
			out, err := b.Run(ctx, BackupRequest{UDID: udid})
			if err != nil {
				t.Fatal(failure.Text(err))
			}
			out.Upkeep(ctx, ctx)
		}
		return loc
	}
	// The default (5% a day) reads a slice of this 1 MB store: it does not go round.
	if cycle, found := scrubState(backup("")); !found || cycle != 0 {
		t.Fatalf("default scrub: state found %v, cycle %d; want a partial slice", found, cycle)
	}
	if cycle, found := scrubState(backup("scrub: {max_bytes_per_day: 1TB, max_percent_per_day: 100}\n")); !found || cycle != 1 {
		t.Fatalf("scrub at 100%% a day: state found %v, cycle %d; want one whole pass", found, cycle)
	}
	if _, found := scrubState(backup("scrub: {max_bytes_per_day: 0}\n")); found {
		t.Fatal("scrub turned off in the settings still ran")
	}
}
