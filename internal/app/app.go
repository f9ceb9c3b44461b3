package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/gofrs/flock"

	"snapback/internal/device"
	"snapback/internal/failure"
	"snapback/jobs"
	"snapback/notify"
	"snapback/settings"
	"snapback/tray"
)

// Config is what an App is made of. Every field is optional: the zero value runs the real
// thing (usbmuxd hotplug, the one backup orchestration, the OS paths). Tests pass their own
// parts here; there are no package-level seams.
type Config struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Devices reports devices; nil: usbmuxd hotplug events (Devices).
	Devices jobs.DeviceSource
	// Runner performs backups; nil: the one orchestration (Runner over Backups).
	Runner jobs.Runner
	// Secrets holds backup passwords (the OS keychain) for the encryption setting.
	Secrets settings.Secrets
	// Notifier, when set, receives the notifications the settings allow.
	Notifier notify.Notifier
	// Stores is the store cache; nil creates one.
	Stores *Stores
	// Wake signals a resume from sleep; nil listens to logind on the system bus when there
	// is one (the minute tick notices otherwise).
	Wake <-chan struct{}
	// Tray builds the tray's controller and state feed (Controller, States).
	Tray bool
	// LogPath is the log file the tray's "Show Log" opens.
	LogPath string
	// Ready, when set, is called once the job manager runs.
	Ready func(*jobs.Manager)
	// Listening, when set, is told the status page's address once it serves, with a maker
	// of one-time login links (the tray's Open Status Page gets it too).
	Listening func(addr string, loginURL func() string)
}

// App is the composition root of the long-running Snapback: single-instance lock, settings
// (loaded and watched), run state, job manager, notifications, wake-up and the tray's feed.
// `snapback daemon`, `snapback tray` and `snapback demo` all run one.
type App struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	stores *Stores
	wifi   *WiFiSync // Wi-Fi sync per device: read on attach, switched from the tray

	ctl    *Controller
	feed   *trayFeed
	states chan tray.State

	mu       sync.Mutex
	settings *settings.Store
	m        *jobs.Manager
	quit     context.CancelFunc
	stopCtl  context.CancelFunc
}

// New returns an App; nothing runs until Run.
func New(cfg Config) *App {
	a := &App{cfg: cfg, log: cfg.Logger, now: cfg.Now, stores: cfg.Stores, wifi: &WiFiSync{}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.stores == nil {
		a.stores = &Stores{Now: a.now, Logger: a.log}
	}
	if cfg.Tray {
		a.feed = &trayFeed{stores: a.stores, wifi: a.wifi, refresh: make(chan struct{}, 1)}
		a.states = make(chan tray.State)
		cfgPath, _ := settings.ConfigPath()
		// Commands may come before Run and end with it.
		base, stop := context.WithCancel(context.Background())
		a.stopCtl = stop
		a.ctl = &Controller{
			Ctx: base, Logger: a.log, Stores: a.stores, SettingsPath: cfgPath, LogPath: cfg.LogPath,
			QuitFunc: a.Quit, Changed: a.feed.poke, Settings: a.currentSettings,
			// A failed menu command is told, not only logged.
			Notifier: cfg.Notifier, WiFi: a.wifi,
		}
	}
	return a
}

// Controller receives the tray's commands (Config.Tray only).
func (a *App) Controller() *Controller { return a.ctl }

// States is the stream of tray states (Config.Tray only); it is closed once Run returns.
func (a *App) States() <-chan tray.State { return a.states }

// Stores is the app's store cache.
func (a *App) Stores() *Stores { return a.stores }

// Quit stops Run.
func (a *App) Quit() {
	a.mu.Lock()
	q := a.quit
	a.mu.Unlock()
	if q != nil {
		q()
	}
}

func (a *App) currentSettings() *settings.Settings {
	a.mu.Lock()
	st := a.settings
	a.mu.Unlock()
	if st == nil {
		return defaultSettings()
	}
	return st.Current()
}

// AlreadyRunningError is returned when another daemon or tray of this user holds the lock.
type AlreadyRunningError struct{ Lock string }

func (e *AlreadyRunningError) Error() string {
	return fmt.Sprintf("another snapback daemon or tray is already running for this user (lock %s)", e.Lock)
}

// ExitCode is the busy code: another instance holds what this one needs.
func (e *AlreadyRunningError) ExitCode() int { return failure.ExitBusy }

// Run runs the app until ctx ends (or Quit): it takes the single-instance lock, loads and
// watches the settings, opens the run state and runs the job manager with its consumers.
func (a *App) Run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.quit = cancel
	a.mu.Unlock()
	var views sync.WaitGroup
	if a.feed != nil {
		stop := context.AfterFunc(ctx, a.stopCtl)
		defer stop()
		views.Go(func() { a.feed.forward(ctx, a.states) })
		defer func() {
			cancel()
			a.stopCtl() // commands still running end with the app
			a.ctl.Wait()
			views.Wait()
			close(a.states)
		}()
	}

	rt, err := settings.RuntimeDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(rt, 0o700); err != nil {
		return err
	}
	lockPath := filepath.Join(rt, "daemon.lock")
	lock := flock.New(lockPath)
	locked, err := lock.TryLock()
	if err != nil {
		return fmt.Errorf("lock %s: %w", lockPath, err)
	}
	if !locked {
		return &AlreadyRunningError{lockPath}
	}
	defer lock.Unlock()

	cfgPath, err := settings.ConfigPath()
	if err != nil {
		return err
	}
	cfg, err := settings.Open(cfgPath)
	if err != nil {
		// Keep going on the defaults: a daemon that stops over a typo backs nothing up.
		a.log.Error("settings file has problems; running on defaults until it is fixed", "path", cfgPath, "err", err)
	} else {
		a.log.Info("settings loaded", "path", cfgPath)
	}
	a.mu.Lock()
	a.settings = cfg
	a.mu.Unlock()

	statePath, err := jobs.DefaultStatePath()
	if err != nil {
		return err
	}
	state, err := jobs.OpenState(statePath)
	var corrupt *jobs.CorruptStateError
	switch {
	case errors.As(err, &corrupt):
		a.log.Warn("run state was unreadable; starting afresh", "err", err)
	case err != nil:
		return err
	}

	runner, devices := a.cfg.Runner, a.cfg.Devices
	var host *device.Host // built-in Wi-Fi discovery as the settings say, shared by both
	if runner == nil || devices == nil {
		host = DeviceHost(cfg.Current(), a.log)
		defer host.Close()
	}
	if runner == nil {
		b := &Backups{Settings: cfg.Current, Stores: a.stores, Secrets: a.cfg.Secrets, Now: a.now, Logger: a.log, Devices: host}
		if n := a.cfg.Notifier; n != nil {
			b.OffsiteFailed = func(udid, name string, err error) { n.Notify(OffsiteFailedMessage(udid, name, err)) }
		}
		runner = &Runner{Backups: b}
	}
	if devices == nil {
		device.SetLogger(a.log.With("component", "usbmux"))
		devices = &Devices{Logger: a.log, Host: host, WiFi: a.wifi}
	}
	wake := a.cfg.Wake
	if wake == nil {
		// Resume from sleep: logind says so on the system bus (Linux). Without it the minute
		// tick still notices the wall clock moved.
		if sys, err := dbus.ConnectSystemBus(); err != nil {
			a.log.Debug("no system bus; wake-up from sleep is noticed by the minute tick", "err", err)
		} else {
			defer sys.Close()
			if wake, err = Wake(ctx, sys); err != nil {
				a.log.Debug("cannot watch logind for resume", "err", err)
			}
		}
	}
	m, err := jobs.NewManager(jobs.Config{
		Wake:     wake,
		Settings: cfg.Current,
		State:    state,
		Runner:   runner,
		Devices:  devices,
		Now:      a.now,
		Logger:   a.log,
		// The store is the truth about what was backed up (a backup made with the CLI counts
		// as the day's backup too); read once per device, then updated on each commit.
		LastBackup: func(udid string) time.Time { return a.stores.LastBackup(ctx, cfg.Current(), udid) },
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.m = m
	a.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { logEvents(ctx, m.Bus(), a.log) })
	if a.cfg.Notifier != nil {
		n := &Notifications{
			Bus: m.Bus(), Notifier: a.cfg.Notifier, Settings: cfg.Current, SettingsPath: cfgPath, Logger: a.log,
			Location: func(udid string) string { loc, _ := Location(cfg.Current(), udid, ""); return loc },
		}
		wg.Go(func() { n.Run(ctx) })
	}
	// Push alerts, dead-man pings and the status page: what a server's users see.
	tokenPath, err := HTTPTokenPath()
	if err != nil {
		return err
	}
	var secrets settings.Secrets = noKeychain{}
	if a.cfg.Secrets != nil {
		secrets = a.cfg.Secrets
	}
	headless := &Headless{Manager: m, Settings: cfg.Current, SettingsPath: cfgPath, Secrets: secrets,
		Stores: a.stores, Logger: a.log, Now: a.now, TokenPath: tokenPath, Listening: a.listening}
	wg.Go(func() { headless.Run(ctx) })
	wg.Go(func() {
		err := cfg.Watch(ctx, func(c settings.Change) {
			if c.Err != nil {
				a.log.Error("settings edit rejected; keeping the last good settings", "err", c.Err)
			} else {
				a.log.Info("settings reloaded")
			}
			if err := m.SettingsChanged(ctx, c.Err); err != nil && ctx.Err() == nil {
				a.log.Warn("cannot apply settings", "err", err)
			}
		})
		if err != nil && ctx.Err() == nil {
			a.log.Error("settings are no longer watched; restart to pick up edits", "err", err)
		}
	})
	a.log.Info("snapback running", "state", statePath, "lock", lockPath)
	wg.Go(func() {
		// Run has started once a command goes through.
		if m.WaitIdle(ctx) != nil {
			return
		}
		if a.ctl != nil {
			a.ctl.SetManager(m, host)
			a.feed.start(m, cfg.Current)
		}
		if a.cfg.Ready != nil {
			a.cfg.Ready(m)
		}
	})
	err = m.Run(ctx)
	cancel()
	wg.Wait()
	a.log.Info("snapback stopped")
	return err
}

// listening hands the status page's login-link maker to the tray and to Config.Listening.
func (a *App) listening(addr string, login func() string) {
	if a.ctl != nil {
		a.ctl.SetStatusPage(login)
	}
	if a.cfg.Listening != nil {
		a.cfg.Listening(addr, login)
	}
}

// logEvents writes the interesting events to the log: for a headless daemon the log is the
// notification channel.
func logEvents(ctx context.Context, bus *jobs.Bus, log *slog.Logger) {
	bus.Follow(ctx, jobs.AllEvents&^jobs.EventProgress, func(e jobs.Event) {
		attrs := []any{"event", e.Type.String()}
		if e.UDID != "" {
			attrs = append(attrs, "udid", e.UDID, "name", e.Name)
		}
		switch e.Type {
		case jobs.EventRunFailed:
			log.Warn("backup failed", append(attrs, "result", e.Result.String(), "err", e.Err, "remedy", e.Remedy)...)
		case jobs.EventRunFinished:
			if r := e.Run; r != nil {
				attrs = append(attrs, "snapshot", r.Snapshot, "dir", r.Dir, "transport", r.Transport, "sent", r.Bytes,
					"size", r.Size, "files", r.Files, "took", r.Duration.Round(time.Millisecond))
				for _, w := range r.Warnings {
					log.Warn("backup warning", "udid", e.UDID, "warning", w)
				}
			}
			log.Info("event", attrs...)
		case jobs.EventPasscodeRequested:
			log.Warn("enter the passcode on the device to let the backup run", attrs...)
		case jobs.EventTrustRequested:
			log.Warn("tap Trust on the device and enter its passcode: it does not trust this computer yet", attrs...)
		case jobs.EventOverdue:
			log.Warn("backup overdue", append(attrs, "days", e.OverdueDays)...)
		case jobs.EventApprovalNeeded:
			log.Warn("approval needed", append(attrs, "what", e.Approval.Summary)...)
		case jobs.EventDamageFound:
			log.Warn(DamagedText(e.Damaged), attrs...)
		case jobs.EventSettingsInvalid:
			// already logged by the watcher
		default:
			log.Info("event", attrs...)
		}
	})
}

// trayFeed turns engine events into tray states: it recomputes the state on every event
// (progress included, which the manager throttles) and re-reads the store's records only
// when something other than progress happened.
type trayFeed struct {
	stores  *Stores
	wifi    *WiFiSync
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
	backups := map[string]DeviceBackups{}
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
				s, err := f.stores.ForDevice(ctx, cfg, d.UDID, "")
				if err != nil {
					backups[d.UDID] = DeviceBackups{DiskMissing: errors.Is(err, failure.DiskMissing)}
					continue
				}
				backups[d.UDID] = ReadBackups(s, d.UDID)
			}
		}
		select {
		case states <- TrayState(time.Now(), st, cfg, backups, f.wifi.Snapshot()):
		case <-ctx.Done():
			return
		}
	}
}
