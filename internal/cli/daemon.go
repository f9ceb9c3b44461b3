package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/gofrs/flock"
	"github.com/spf13/cobra"

	"snapback/internal/app"
	"snapback/internal/device"
	"snapback/jobs"
	"snapback/notify"
	"snapback/settings"
)

// daemonEnv is what the daemon hands to daemonBackend.
type daemonEnv struct {
	Settings *settings.Store // current settings (live-reloaded)
	State    *jobs.StateStore
	Secrets  settings.Secrets // backup passwords (keychain)
	Logger   *slog.Logger
	Stores   *app.Stores // the snapshot stores, shared with the tray's view and commands
}

// engineHooks let the tray run the same engine as the daemon and watch it.
type engineHooks struct {
	// ready is called once the manager runs, with the live settings.
	ready func(*jobs.Manager, func() *settings.Settings)
	// notifier, when set, receives desktop notifications for the engine's events.
	notifier notify.Notifier
	// stores, when set, is the store cache to use (so the tray reads the same stores).
	stores *app.Stores
	// listening, when set, is told the status page's address once it serves, with a maker of
	// one-time login links.
	listening func(addr string, loginURL func() string)
}

// daemonBackend builds the Runner (one backup: device -> mobilebackup2 -> snapshot store) and
// the DeviceSource (usbmuxd hotplug) the job manager drives. Tests replace it with fakes.
// Anything it starts must stop when ctx ends.
var daemonBackend = func(ctx context.Context, env daemonEnv) (jobs.Runner, jobs.DeviceSource, error) {
	device.SetLogger(env.Logger.With("component", "usbmux"))
	host := daemonHost(ctx, env)
	return &app.Runner{Now: time.Now, Logger: env.Logger, Stores: env.Stores, Secrets: env.Secrets, Devices: host},
		&app.Devices{Logger: env.Logger, Host: host}, nil
}

// newDaemonCmd is `snapback daemon`: the headless scheduler for servers and NAS boxes.
func newDaemonCmd() *cobra.Command {
	var debug bool
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the backup scheduler without a tray icon (servers, NAS)",
		Long: "Runs the daily schedule headless: watches devices and the settings file, backs up each device once a\n" +
			"day inside its window and logs what happens. One daemon per user (a lock in the runtime folder).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDaemon(ctx, log, nil)
		},
	}
	cmd.Flags().BoolVar(&debug, "debug", false, "log debug details")
	return cmd
}

// alreadyRunningError is returned when another daemon of this user holds the lock.
type alreadyRunningError struct{ lock string }

func (e alreadyRunningError) Error() string {
	return fmt.Sprintf("another snapback daemon or tray is already running for this user (lock %s)", e.lock)
}

// runDaemon is the daemon's body: single-instance lock, settings (loaded and watched), run
// state, the backend and the job manager, until ctx ends. ready, when not nil, is called
// once everything runs (tests).
func runDaemon(ctx context.Context, log *slog.Logger, ready func(*jobs.Manager)) error {
	h := engineHooks{}
	if ready != nil {
		h.ready = func(m *jobs.Manager, _ func() *settings.Settings) { ready(m) }
	}
	return runEngine(ctx, log, h)
}

// runEngine is the body shared by the daemon and the tray: everything but the view.
func runEngine(ctx context.Context, log *slog.Logger, hooks engineHooks) error {
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
		return alreadyRunningError{lockPath}
	}
	defer lock.Unlock()

	cfgPath, err := settings.ConfigPath()
	if err != nil {
		return err
	}
	store, err := settings.Open(cfgPath)
	if err != nil {
		// Keep going on the defaults: a daemon that stops over a typo backs nothing up.
		log.Error("settings file has problems; running on defaults until it is fixed", "path", cfgPath, "err", err)
	} else {
		log.Info("settings loaded", "path", cfgPath)
	}

	statePath, err := jobs.DefaultStatePath()
	if err != nil {
		return err
	}
	state, err := jobs.OpenState(statePath)
	var corrupt *jobs.CorruptStateError
	switch {
	case errors.As(err, &corrupt):
		log.Warn("run state was unreadable; starting afresh", "err", err)
	case err != nil:
		return err
	}

	stores := hooks.stores
	if stores == nil {
		stores = &app.Stores{Now: time.Now, Logger: log}
	}
	env := daemonEnv{Settings: store, State: state, Secrets: newSecrets(), Logger: log, Stores: stores}
	runner, devices, err := daemonBackend(ctx, env)
	if err != nil {
		return err
	}
	if r, ok := runner.(*app.Runner); ok && hooks.notifier != nil {
		r.OffsiteFailed = func(udid, name string, err error) { hooks.notifier.Notify(app.OffsiteFailedMessage(udid, name, err)) }
	}
	// Resume from sleep: logind says so on the system bus (Linux). Without it the minute
	// tick still notices the wall clock moved.
	var wake <-chan struct{}
	if sys, err := dbus.ConnectSystemBus(); err != nil {
		log.Debug("no system bus; wake-up from sleep is noticed by the minute tick", "err", err)
	} else if wake, err = app.Wake(ctx, sys); err != nil {
		log.Debug("cannot watch logind for resume", "err", err)
	}
	m, err := jobs.NewManager(jobs.Config{
		Wake:     wake,
		Settings: store.Current,
		State:    state,
		Runner:   runner,
		Devices:  devices,
		Now:      time.Now,
		Logger:   log,
		// The store is the truth about what was backed up: a backup made with the CLI
		// counts as the day's backup too.
		LastBackup: func(udid string) time.Time {
			st, err := stores.Open(ctx, store.Current().Effective(udid).Location)
			if err != nil {
				return time.Time{}
			}
			if b := app.ReadBackups(st, udid); b.Latest != nil {
				return b.Latest.Time
			}
			return time.Time{}
		},
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { logEvents(ctx, m.Bus(), log) })
	if hooks.notifier != nil {
		n := &app.Notifications{
			Bus: m.Bus(), Status: m.Status, Notifier: hooks.notifier, Settings: store.Current,
			SettingsPath: cfgPath, Logger: log,
			Location: func(udid string) string { return store.Current().Effective(udid).Location },
			Size: func(udid string) int64 {
				st, err := stores.Open(ctx, store.Current().Effective(udid).Location)
				if err != nil {
					return 0
				}
				if b := app.ReadBackups(st, udid); b.Latest != nil {
					return b.Latest.TotalSize
				}
				return 0
			},
		}
		wg.Go(func() { n.Run(ctx) })
	}
	// Push alerts, dead-man pings and the status page: what a server's users see.
	tokenPath, err := app.HTTPTokenPath()
	if err != nil {
		return err
	}
	headless := &app.Headless{Manager: m, Settings: store.Current, SettingsPath: cfgPath, Secrets: env.Secrets,
		Stores: stores, Logger: log, Now: time.Now, TokenPath: tokenPath, Listening: hooks.listening}
	wg.Go(func() { headless.Run(ctx) })
	wg.Go(func() {
		err := store.Watch(ctx, func(c settings.Change) {
			if c.Err != nil {
				log.Error("settings edit rejected; keeping the last good settings", "err", c.Err)
			} else {
				log.Info("settings reloaded")
			}
			if err := m.SettingsChanged(ctx, c.Err); err != nil && ctx.Err() == nil {
				log.Warn("cannot apply settings", "err", err)
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Error("settings are no longer watched; restart to pick up edits", "err", err)
		}
	})
	log.Info("daemon running", "state", statePath, "lock", lockPath)
	if hooks.ready != nil {
		wg.Go(func() {
			// Run has started once a command goes through.
			if m.WaitIdle(ctx) == nil {
				hooks.ready(m, store.Current)
			}
		})
	}
	err = m.Run(ctx)
	cancel()
	wg.Wait()
	log.Info("daemon stopped")
	return err
}

// logEvents writes the interesting events to the log: for a headless daemon the log is the
// notification channel.
func logEvents(ctx context.Context, bus *jobs.Bus, log *slog.Logger) {
	sub := bus.Subscribe(jobs.AllEvents &^ jobs.EventProgress)
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C:
			if !ok {
				return
			}
			attrs := []any{"event", e.Type.String()}
			if e.UDID != "" {
				attrs = append(attrs, "udid", e.UDID, "name", e.Name)
			}
			switch e.Type {
			case jobs.EventRunFailed:
				log.Warn("backup failed", append(attrs, "result", e.Result.String(), "err", e.Err)...)
			case jobs.EventPasscodeRequested:
				log.Warn("enter the passcode on the device to let the backup run", attrs...)
			case jobs.EventTrustRequested:
				log.Warn("tap Trust on the device and enter its passcode: it does not trust this computer yet", attrs...)
			case jobs.EventOverdue:
				log.Warn("backup overdue", append(attrs, "days", e.OverdueDays)...)
			case jobs.EventApprovalNeeded:
				log.Warn("approval needed", append(attrs, "what", e.Approval.Summary)...)
			case jobs.EventSettingsInvalid:
				// already logged by the watcher
			default:
				log.Info("event", attrs...)
			}
		}
	}
}

// slogTo is the daemon's log format on w.
func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
