package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"snapback/icons"
	"snapback/internal/app"
	"snapback/internal/store"
	"snapback/jobs"
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

// trayEngine runs the engine (as the daemon does) behind the tray: a controller for clicks,
// desktop notifications, and a stream of tray states. The stream closes after the engine
// has stopped.
func trayEngine(parent context.Context) (tray.Controller, <-chan tray.State, error) {
	f, logPath, err := logFile()
	if err != nil {
		return nil, nil, fmt.Errorf("open log: %w", err)
	}
	log := slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfgPath, err := settings.ConfigPath()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(parent)
	stores := &app.Stores{Now: time.Now, Logger: log}
	ctl, feed := newTrayView(ctx, log, stores, cfgPath, logPath, cancel)
	notifier := notify.NewGate(notify.NewBeeep("Snapback", icons.App(256)), time.Now)

	states := make(chan tray.State)
	go func() {
		defer close(states)
		defer f.Close()
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() { feed.forward(ctx, states) })
		err := runEngine(ctx, log, engineHooks{
			notifier: notifier,
			stores:   stores,
			ready: func(m *jobs.Manager, cur func() *settings.Settings) {
				ctl.SetManager(m)
				feed.start(m, cur)
			},
			listening: func(_ string, login func() string) { ctl.SetStatusPage(login) },
		})
		if err != nil {
			log.Error("engine stopped", "err", err)
			fmt.Fprintln(os.Stderr, "snapback:", err)
		}
		cancel()
		ctl.Wait()
		wg.Wait()
	}()
	return ctl, states, nil
}

// newTrayView builds the tray's controller and its state feed; the manager is handed to both
// once it runs.
func newTrayView(ctx context.Context, log *slog.Logger, stores *app.Stores, cfgPath, logPath string, quit func()) (*app.Controller, *trayFeed) {
	feed := &trayFeed{stores: stores, refresh: make(chan struct{}, 1)}
	ctl := &app.Controller{
		Ctx: ctx, Logger: log, Stores: stores, SettingsPath: cfgPath, LogPath: logPath,
		QuitFunc: quit, Changed: feed.poke,
		Settings: func() *settings.Settings { return feed.settings() },
	}
	return ctl, feed
}

// trayFeed turns engine events into tray states: it recomputes the state on every event
// (progress included, which the manager throttles) and re-reads the store's records only
// when something other than progress happened.
type trayFeed struct {
	stores  *app.Stores
	refresh chan struct{}

	mu  sync.Mutex
	m   *jobs.Manager
	cur func() *settings.Settings
}

func (f *trayFeed) start(m *jobs.Manager, cur func() *settings.Settings) {
	f.mu.Lock()
	f.m, f.cur = m, cur
	f.mu.Unlock()
	f.poke()
}

func (f *trayFeed) settings() *settings.Settings {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil {
		s, _ := settings.Parse(nil)
		return s
	}
	return f.cur()
}

func (f *trayFeed) poke() {
	select {
	case f.refresh <- struct{}{}:
	default:
	}
}

// forward owns the subscription and the send to the tray until ctx ends.
func (f *trayFeed) forward(ctx context.Context, states chan<- tray.State) {
	// Until the engine is up the tray shows an empty, idle menu.
	select {
	case states <- tray.State{Now: time.Now()}:
	case <-ctx.Done():
		return
	}
	var sub *jobs.Subscription
	defer func() {
		if sub != nil {
			sub.Close()
		}
	}()
	backups := map[string]app.Backups{}
	var events <-chan jobs.Event
	for {
		reread := false
		select {
		case <-ctx.Done():
			return
		case <-f.refresh:
			reread = true
		case ev, ok := <-events:
			if !ok {
				return
			}
			reread = ev.Type != jobs.EventProgress
			if reread {
				// A handler may change more after its event; look once more shortly after.
				time.AfterFunc(200*time.Millisecond, f.poke)
			}
		}
		f.mu.Lock()
		m, cur := f.m, f.cur
		f.mu.Unlock()
		if m == nil {
			continue
		}
		if sub == nil {
			sub = m.Bus().Subscribe(jobs.AllEvents)
			events = sub.C
		}
		st := m.Status()
		cfg := cur()
		if reread {
			for _, d := range st.Devices {
				s, err := f.stores.Open(ctx, cfg.Effective(d.UDID).Location)
				if err != nil {
					backups[d.UDID] = app.Backups{DiskMissing: errors.Is(err, store.ErrDiskNotConnected)}
					continue
				}
				backups[d.UDID] = app.ReadBackups(s, d.UDID)
			}
		}
		select {
		case states <- app.TrayState(time.Now(), st, cfg, backups):
		case <-ctx.Done():
			return
		}
	}
}
