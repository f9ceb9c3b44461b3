package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"snapback/internal/device"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/jobs"
	"snapback/notify"
	"snapback/settings"
)

// Controller carries out the tray's commands on the engine, the store and the desktop. It
// implements tray.Controller. Commands may arrive before the engine runs (Manager nil):
// they are then ignored with a log line. Every method returns quickly: slow work runs on
// goroutines tracked by Wait.
type Controller struct {
	Ctx          context.Context
	Logger       *slog.Logger
	Settings     func() *settings.Settings
	Stores       *Stores
	SettingsPath string
	LogPath      string
	// Changed is called after a command changed stored data (snapshots), so the view refreshes.
	Changed func()
	// QuitFunc stops the app.
	QuitFunc func()
	// Notifier tells the user when a command they chose failed; nil logs only.
	Notifier notify.Notifier
	// WiFi remembers each device's Wi-Fi sync state; SetWiFiSync records what it switched.
	WiFi *WiFiSync

	mu        sync.Mutex
	m         *jobs.Manager
	host      *device.Host // how devices are found (wifi_discovery); nil: usbmuxd alone
	wg        sync.WaitGroup
	pageLogin func() string // makes one-time login links to the status page; nil while it is off
}

// SetStatusPage hands the controller the status page's login-link maker once it serves.
func (c *Controller) SetStatusPage(loginURL func() string) {
	c.mu.Lock()
	c.pageLogin = loginURL
	c.mu.Unlock()
}

// OpenStatusPage opens the status page in the browser through a one-time login link, so the
// buttons work there without the token ever being on a command line.
func (c *Controller) OpenStatusPage() {
	c.mu.Lock()
	login := c.pageLogin
	c.mu.Unlock()
	if login == nil {
		c.Logger.Warn("the status page is not running; set http.listen in the settings file (e.g. 127.0.0.1:8427)")
		return
	}
	if err := open(login()); err != nil {
		c.Logger.Warn("cannot open the status page", "err", err)
	}
}

// SetManager hands the running manager to the controller, and the device Host it finds
// devices through (nil: usbmuxd alone).
func (c *Controller) SetManager(m *jobs.Manager, host *device.Host) {
	c.mu.Lock()
	c.m, c.host = m, host
	c.mu.Unlock()
}

func (c *Controller) deviceHost() *device.Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.host
}

func (c *Controller) manager() *jobs.Manager {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.Logger.Info("engine not running yet; command ignored")
	}
	return c.m
}

// do runs f off the tray's goroutine, bounded in time, logging its error.
func (c *Controller) do(what string, f func(ctx context.Context) error) {
	c.wg.Go(func() {
		ctx, cancel := context.WithTimeout(c.Ctx, 10*time.Minute)
		defer cancel()
		if err := f(ctx); err != nil {
			c.failed(what, err)
		}
		if c.Changed != nil {
			c.Changed()
		}
	})
}

// failed logs a command's failure and tells the user: a click whose effect never shows must
// not fail only in the log.
func (c *Controller) failed(what string, err error) {
	c.Logger.Warn(what+" failed", "err", err)
	if c.Notifier == nil {
		return
	}
	if nerr := c.Notifier.Notify(notify.CommandFailed(what, err.Error(), failure.Remedy(err))); nerr != nil {
		c.Logger.Warn("notification failed", "err", nerr)
	}
}

// Wait waits for commands still running.
func (c *Controller) Wait() { c.wg.Wait() }

func (c *Controller) BackUpNow(udid string) {
	if m := c.manager(); m != nil {
		c.do("back up now", func(ctx context.Context) error { return m.BackUpNow(ctx, udid) })
	}
}

func (c *Controller) Cancel(udid string) {
	if m := c.manager(); m != nil {
		c.do("cancel", func(ctx context.Context) error { _, err := m.Cancel(ctx, udid); return err })
	}
}

// SetAutomatic is not written back to the settings file yet (Snapback never rewrites the
// user's YAML blindly); it opens the file at the device's entry instead.
func (c *Controller) SetAutomatic(udid string, on bool) {
	c.Logger.Info("to change automatic backups, edit schedule.enabled in the settings file", "udid", udid, "on", on)
	c.OpenSettings()
}

func (c *Controller) Pause(on bool) {
	if m := c.manager(); m != nil {
		c.do("pause", func(ctx context.Context) error { return m.SetPaused(ctx, on) })
	}
}

// ApproveDeletion deletes what retention asked about, then clears the request.
func (c *Controller) ApproveDeletion(udid string) {
	m := c.manager()
	if m == nil {
		return
	}
	c.do("approve deletion", func(ctx context.Context) error {
		return ApproveDeletion(ctx, m, c.Stores, c.Settings().Effective(udid), udid, c.Logger)
	})
}

// ApproveDeletion deletes what retention asked the user about, then clears the request. The
// tray and the status page both call it.
func ApproveDeletion(ctx context.Context, m *jobs.Manager, stores *Stores, eff settings.DeviceSettings, udid string, log *slog.Logger) error {
	st, err := stores.Open(ctx, eff.Location)
	if err != nil {
		return err
	}
	_, deleted, err := st.Prune(ctx, udid, Policy(eff.Snapshots), store.PruneOptions{Approve: true})
	if err != nil {
		return err
	}
	log.Info("old snapshots deleted with the user's approval", "udid", udid, "count", len(deleted))
	return m.ClearApproval(ctx, udid)
}

func (c *Controller) withStore(what, udid string, f func(ctx context.Context, st *store.Store) error) {
	c.do(what, func(ctx context.Context) error {
		st, err := c.Stores.ForDevice(ctx, c.Settings(), udid, "")
		if err != nil {
			return err
		}
		return f(ctx, st)
	})
}

func (c *Controller) OpenBackupFolder(udid string) {
	c.withStore("open backup folder", udid, func(_ context.Context, st *store.Store) error {
		return open(st.LatestDir(udid))
	})
}

func (c *Controller) OpenSnapshot(udid, id string) {
	c.withStore("open snapshot", udid, func(_ context.Context, st *store.Store) error {
		sn, err := st.Get(udid, id)
		if err != nil {
			return err
		}
		return open(sn.Path)
	})
}

func (c *Controller) ArchiveSnapshot(udid, id string) {
	c.withStore("archive snapshot", udid, func(ctx context.Context, st *store.Store) error {
		_, err := st.Archive(ctx, udid, id)
		return err
	})
}

func (c *Controller) DeleteSnapshot(udid, id string) {
	c.withStore("delete snapshot", udid, func(ctx context.Context, st *store.Store) error {
		return st.Delete(ctx, udid, id)
	})
}

func (c *Controller) OpenSettings() {
	if err := open(c.SettingsPath); err != nil {
		c.failed("open the settings file", err)
	}
}

func (c *Controller) ShowLog() {
	if err := open(c.LogPath); err != nil {
		c.failed("show the log", err)
	}
}

func (c *Controller) Quit() {
	if c.QuitFunc != nil {
		c.QuitFunc()
	}
}

// noOpenerError: the desktop has no program to open files with. Its remedy names the file,
// so the user can open it another way.
type noOpenerError struct{ prog, path string }

func (e noOpenerError) Error() string {
	return fmt.Sprintf("no program to open files was found (%s is not installed); the file is %s", e.prog, e.path)
}

func (e noOpenerError) Remedy() string { return "open it yourself, or install " + opener() }

// opener names what provides the desktop's "open" command.
func opener() string {
	if runtime.GOOS == "linux" || runtime.GOOS == "freebsd" {
		return "xdg-utils (apt install xdg-utils)"
	}
	return "the desktop's file opener"
}

// open shows a file or folder with the desktop's default application.
func open(path string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", path)
	case "windows":
		cmd = exec.Command("explorer", path)
	default:
		cmd = exec.Command("xdg-open", path)
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			// A server or minimal desktop without xdg-utils: say where the file is instead.
			return noOpenerError{prog: cmd.Path, path: path}
		}
		return err
	}
	go cmd.Wait() // reap; the opened application outlives us
	return nil
}
