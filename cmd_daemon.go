package main

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

	"github.com/gofrs/flock"
	"github.com/spf13/cobra"

	"snapback/jobs"
	"snapback/settings"
)

// daemonEnv is what the daemon hands to daemonBackend.
type daemonEnv struct {
	Settings *settings.Store // current settings (live-reloaded)
	State    *jobs.StateStore
	Secrets  settings.Secrets // backup passwords (keychain)
	Logger   *slog.Logger
}

// errNoBackend says the daemon has nothing to back up with yet.
var errNoBackend = errors.New("daemon: no backup engine is wired in (daemonBackend in cmd_daemon.go); " +
	"refusing to run a schedule that could never back anything up")

// daemonBackend builds the Runner (one backup: device -> mobilebackup2 -> snapshot store) and
// the DeviceSource (usbmuxd hotplug) the job manager drives. The composition root replaces
// it once the backup engine and device layer are in; until then the daemon stops with
// errNoBackend. Anything it starts must stop when ctx ends.
var daemonBackend = func(ctx context.Context, env daemonEnv) (jobs.Runner, jobs.DeviceSource, error) {
	return nil, nil, errNoBackend
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

	env := daemonEnv{Settings: store, State: state, Secrets: newSecrets(), Logger: log}
	runner, devices, err := daemonBackend(ctx, env)
	if err != nil {
		return err
	}
	m, err := jobs.NewManager(jobs.Config{
		Settings: store.Current,
		State:    state,
		Runner:   runner,
		Devices:  devices,
		Now:      time.Now,
		Logger:   log,
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { logEvents(ctx, m.Bus(), log) })
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
	if ready != nil {
		wg.Go(func() {
			// Run has started once a command goes through.
			if m.WaitIdle(ctx) == nil {
				ready(m)
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
