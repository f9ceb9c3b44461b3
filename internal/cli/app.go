package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"snapback/icons"
	"snapback/internal/app"
	"snapback/internal/failure"
	"snapback/notify"
	"snapback/settings"
	"snapback/tray"
)

// hasGraphicalSession tells whether a tray icon can be shown: macOS and Windows always have
// a desktop; elsewhere a display server must be reachable.
func hasGraphicalSession() bool {
	switch runtime.GOOS {
	case "darwin", "windows":
		return true
	}
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}

// logFile opens the app's log in the state folder (the tray's "Show Log" opens it).
func logFile() (*os.File, string, error) {
	dir, err := settings.StateDir()
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	p := filepath.Join(dir, "snapback.log")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	return f, p, err
}

// trayEngine runs the app (as the daemon does) behind the tray: a controller for clicks,
// desktop notifications, and a stream of tray states. The stream closes after the app has
// stopped, which it does when ctx ends or the menu's Quit is chosen.
func trayEngine(ctx context.Context) (tray.Controller, <-chan tray.State, error) {
	f, logPath, err := logFile()
	if err != nil {
		return nil, nil, fmt.Errorf("open log: %w", err)
	}
	log := slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a := app.New(app.Config{
		Logger:   log,
		Secrets:  settings.NewKeyring(0),
		Notifier: notify.NewGate(notify.NewBeeep("Snapback", icons.App(256)), time.Now),
		Tray:     true,
		LogPath:  logPath,
	})
	go func() {
		defer f.Close()
		if err := a.Run(ctx); err != nil {
			log.Error("engine stopped", "err", err)
			fmt.Fprintln(os.Stderr, "snapback:", failure.Text(err))
		}
	}()
	return a.Controller(), a.States(), nil
}
