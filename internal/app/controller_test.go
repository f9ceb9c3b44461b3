package app

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/notify"
	"snapback/notify/notifytest"
	"snapback/settings"
)

// TestControllerTellsFailedCommands: a menu command that fails raises a notification that
// says what failed, why and what to do; with no program to open files (no xdg-open on the
// PATH), Open Settings and Show Log say where the file is instead of failing silently.
func TestControllerTellsFailedCommands(t *testing.T) {
	loc := t.TempDir()
	s, err := settings.Parse([]byte("location: " + loc + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &notifytest.Recorder{}
	cfg, logPath := filepath.Join(t.TempDir(), "config.yaml"), filepath.Join(t.TempDir(), "snapback.log")
	c := &Controller{
		Ctx: context.Background(), Logger: slog.New(slog.DiscardHandler), Notifier: rec,
		Settings: func() *settings.Settings { return s }, Stores: &Stores{Now: time.Now, Logger: slog.New(slog.DiscardHandler)},
		SettingsPath: cfg, LogPath: logPath,
	}
	const udid = "00008110-000A1B2C3D4E5F60"
	c.DeleteSnapshot(udid, "20260101-000000") // no such snapshot
	c.Wait()
	msgs := rec.Messages()
	if len(msgs) != 1 || msgs[0].Kind != notify.ActionFailed || msgs[0].Title != "Could not delete snapshot" || msgs[0].Body == "" {
		t.Fatalf("a failed delete notified %+v", msgs)
	}

	t.Setenv("PATH", t.TempDir()) // no xdg-open, open or explorer
	c.OpenSettings()
	c.ShowLog()
	msgs = rec.Messages()[1:]
	if len(msgs) != 2 {
		t.Fatalf("without an opener: %d notifications, want 2: %+v", len(msgs), msgs)
	}
	t.Logf("%+v", rec.Messages())
	for i, want := range []struct{ title, path string }{{"Could not open the settings file", cfg}, {"Could not show the log", logPath}} {
		m := msgs[i]
		if m.Kind != notify.ActionFailed || m.Title != want.title || !strings.Contains(m.Body, want.path) || !strings.Contains(m.Body, "not installed") {
			t.Errorf("notification %d = %+v; want %q naming %s and the missing opener", i, m, want.title, want.path)
		}
	}
}
