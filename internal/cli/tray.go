package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/failure"
	"snapback/tray"
)

// trayBackend starts the engine side of the tray and returns the Controller that receives the
// menu's commands and the channel of States to show. Contract: the engine stops when ctx is
// cancelled and then closes the channel; closing the channel also ends the tray.
type trayBackend func(ctx context.Context) (tray.Controller, <-chan tray.State, error)

// engineStopWait bounds how long `snapback tray` waits for the engine to close its state
// channel after the tray has gone, so a stuck engine cannot keep the process alive forever.
const engineStopWait = 15 * time.Second

func newTrayCmd() *cobra.Command {
	var preview bool
	cmd := &cobra.Command{
		Use:   "tray",
		Short: "Show Snapback in the menu bar or system tray",
		Long: `Shows Snapback's icon and menu in the menu bar (macOS), notification area (Windows) or
system tray (Linux: needs a StatusNotifierItem host, e.g. KDE, or GNOME's AppIndicator
extension). --preview shows a scripted demo state with no engine behind it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := trayBackend(trayEngine)
			if preview {
				start = previewBackend
			}
			if err := checkTrayHost(cmd.ErrOrStderr()); err != nil {
				return err
			}
			return runTray(cmd.Context(), start)
		},
	}
	cmd.Flags().BoolVar(&preview, "preview", false, "show a scripted demo menu instead of the real engine")
	return cmd
}

// checkTrayHost runs before anything starts, so a tray that cannot show fails at once, with
// the way out, and changes nothing. A desktop with no tray yet gets a warning on w.
func checkTrayHost(w io.Writer) error {
	note, err := tray.CheckHost()
	if err != nil {
		return failure.New(failure.Usage, err).WithFix("run snapback tray from a desktop session; on a server or over SSH, run snapback daemon instead")
	}
	if note != "" {
		fmt.Fprintln(w, "snapback:", note)
	}
	return nil
}

// runTray shows the tray until the user quits, SIGINT/SIGTERM arrives or the engine closes its
// state channel; then it stops the engine and waits for it. It blocks on the calling goroutine,
// which must be main's (systray needs the main thread on macOS).
func runTray(parent context.Context, start trayBackend) error {
	ctx, cancel := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctl, states, err := start(ctx)
	if err != nil {
		return fmt.Errorf("tray: start engine: %w", err)
	}
	t := tray.New(ctl, states)
	stopped := make(chan struct{})
	go func() { // ends the tray on a signal; exits when the tray ends for any reason
		select {
		case <-ctx.Done():
			t.Quit()
		case <-stopped:
		}
	}()
	if err := t.Run(); errors.Is(err, tray.ErrSessionGone) {
		// Logout ends the session bus before it ends the process: not a failure, but say
		// why the engine stops (a backup under way is cancelled and resumes next time).
		fmt.Fprintln(os.Stderr, "snapback:", err.Error()+"; stopping")
	}
	close(stopped)
	cancel()
	timeout := time.After(engineStopWait)
	for {
		select {
		case _, ok := <-states:
			if !ok {
				return nil
			}
		case <-timeout:
			return errors.New("tray: the engine did not stop within " + engineStopWait.String())
		}
	}
}

// previewBackend plays a short script (idle, passcode, progress, done, approval) on a loop so
// the menu can be looked at and screenshotted without a device. Clicks are logged.
func previewBackend(ctx context.Context) (tray.Controller, <-chan tray.State, error) {
	ctx, cancel := context.WithCancel(ctx)
	states := make(chan tray.State)
	go func() {
		defer close(states)
		tick := time.NewTicker(700 * time.Millisecond)
		defer tick.Stop()
		for step := 0; ; step++ {
			select {
			case states <- previewState(time.Now(), step):
			case <-ctx.Done():
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return previewController{log: slog.Default(), quit: cancel}, states, nil
}

func previewState(now time.Time, step int) tray.State {
	day := func(d int, hh, mm int) time.Time {
		y, m, dd := now.Date()
		return time.Date(y, m, dd+d, hh, mm, 0, 0, now.Location())
	}
	anna := tray.Device{UDID: "00008030-001A2B3C4D5E802E", Name: "Anna's iPhone", Connected: true, Transport: tray.USB, Automatic: true,
		LastBackup: &tray.Backup{Time: day(-1, 9, 12), Size: 2_900_000_000, Transport: tray.USB, IOSVersion: "18.1"},
		Snapshots: []tray.Snapshot{
			{ID: "20261120-091000", Time: day(-2, 9, 10), Size: 120_000_000},
			{ID: "20261101-090000", Time: day(-21, 9, 0), Size: 1_180_000_000, Archived: true},
		}, SnapshotsSize: 1_300_000_000}
	anna.WiFiSync = tray.WiFiSyncOff
	ben := tray.Device{UDID: "00008101-000A1B2C3D4E5F60", Name: "Ben's iPad", Connected: true, Transport: tray.WiFi, Automatic: true, Encrypted: true, WiFiSync: tray.WiFiSyncOn,
		LastBackup: &tray.Backup{Time: day(0, 8, 2), Size: 41_000_000_000, Transport: tray.WiFi, IOSVersion: "17.6"}}
	const total = 2_900_000_000
	switch phase := step % 24; {
	case phase < 4:
	case phase < 7:
		anna.Status = tray.WaitingPasscode
	case phase < 18:
		pct := (phase - 7) * 10
		anna.Status, anna.Progress = tray.BackingUp, tray.Progress{Percent: pct, Done: total * int64(pct) / 100, Total: total}
	case phase < 19:
		anna.Status = tray.Committing
	default:
		anna.LastBackup = &tray.Backup{Time: day(0, now.Hour(), now.Minute()), Size: total, Transport: tray.USB, IOSVersion: "18.1"}
		anna.PendingDeletion = &tray.Deletion{Snapshots: 3, Size: 2_100_000_000}
	}
	return tray.State{Now: now, Devices: []tray.Device{anna, ben}}
}

// previewController logs what a click would do; Quit stops the preview script.
type previewController struct {
	log  *slog.Logger
	quit func()
}

func (p previewController) BackUpNow(udid string) { p.log.Info("preview: back up now", "udid", udid) }
func (p previewController) Cancel(udid string)    { p.log.Info("preview: cancel", "udid", udid) }
func (p previewController) SetAutomatic(udid string, on bool) {
	p.log.Info("preview: automatic backups", "udid", udid, "on", on)
}
func (p previewController) SetWiFiSync(udid string, on bool) {
	p.log.Info("preview: Wi-Fi sync", "udid", udid, "on", on)
}
func (p previewController) Pause(on bool) { p.log.Info("preview: pause", "on", on) }
func (p previewController) ApproveDeletion(udid string) {
	p.log.Info("preview: approve deletion", "udid", udid)
}
func (p previewController) OpenBackupFolder(udid string) {
	p.log.Info("preview: open backup folder", "udid", udid)
}
func (p previewController) OpenSnapshot(udid, id string) {
	p.log.Info("preview: open snapshot", "udid", udid, "id", id)
}
func (p previewController) ArchiveSnapshot(udid, id string) {
	p.log.Info("preview: archive snapshot", "udid", udid, "id", id)
}
func (p previewController) DeleteSnapshot(udid, id string) {
	p.log.Info("preview: delete snapshot", "udid", udid, "id", id)
}
func (p previewController) OpenSettings()   { p.log.Info("preview: open settings") }
func (p previewController) ShowLog()        { p.log.Info("preview: show log") }
func (p previewController) OpenStatusPage() { p.log.Info("preview: open status page") }
func (p previewController) Quit()           { p.log.Info("preview: quit"); p.quit() }
