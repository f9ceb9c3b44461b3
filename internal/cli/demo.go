package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/app"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/jobs"
	"snapback/notify"
	"snapback/settings"
	"snapback/tray"
)

// newDemoCmd is `snapback demo`: the whole app against an in-process simulated iPhone, in a
// throwaway home, so anyone can watch Snapback work without a device.
func newDemoCmd() *cobra.Command {
	var (
		keep             string
		files            int
		size             string
		passcode         time.Duration
		forceTray, noTUI bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch Snapback back up a simulated iPhone (no device needed)",
		Long: `Starts a simulated iPhone behind a private usbmuxd socket and runs Snapback's real engine
against it in a throwaway home folder: the device appears, asks for its passcode, is backed up
by itself, changes, is backed up again by hand, and the two backups are listed as snapshots.
With a graphical session the tray icon shows it too and Snapback keeps running until you quit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			total, err := parseSize(size)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			tray := forceTray || (hasGraphicalSession() && !noTUI)
			return runDemo(ctx, cmd.OutOrStdout(), demoOptions{home: keep, files: files, size: total, passcode: passcode, tray: tray})
		},
	}
	cmd.Flags().StringVar(&keep, "home", "", "keep the demo's settings, state and backups in this folder (default: a temporary one, removed afterwards)")
	cmd.Flags().IntVar(&files, "files", 600, "files on the simulated iPhone")
	cmd.Flags().StringVar(&size, "size", "60MB", "total size of the simulated iPhone's files")
	cmd.Flags().DurationVar(&passcode, "passcode-delay", 3*time.Second, "how long the simulated user takes to enter the passcode")
	cmd.Flags().BoolVar(&forceTray, "tray", false, "show the tray icon even if no display is detected")
	cmd.Flags().BoolVar(&noTUI, "headless", false, "never show the tray icon")
	return cmd
}

type demoOptions struct {
	home     string
	files    int
	size     int64
	passcode time.Duration
	tray     bool
}

func runDemo(ctx context.Context, out io.Writer, o demoOptions) error {
	if o.tray {
		if err := checkTrayHost(out); err != nil {
			return err
		}
	}
	home := o.home
	if home == "" {
		tmp, err := os.MkdirTemp("", "snapback-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		home = tmp
	}
	// The demo never touches the user's own settings, state or backups.
	for k, sub := range map[string]string{"XDG_CONFIG_HOME": "config", "XDG_STATE_HOME": "state", "XDG_DATA_HOME": "data", "XDG_RUNTIME_DIR": "run"} {
		if err := os.Setenv(k, filepath.Join(home, sub)); err != nil {
			return err
		}
	}
	os.Setenv("SNAPBACK_CONFIG", "")
	os.Unsetenv("SNAPBACK_WIFI_DISCOVERY")
	cfgPath, err := settings.ConfigPath()
	if err != nil {
		return err
	}
	os.MkdirAll(filepath.Dir(cfgPath), 0o700)
	// wifi_discovery: mux keeps the demo to its simulated iPhone: built-in discovery would
	// look for the user's real devices on the network.
	if err := os.WriteFile(cfgPath, []byte("# snapback demo: back up at any hour\nwifi_discovery: mux\nschedule:\n  window: \"00:00-24:00\"\nconditions:\n  min_battery: 0\n"), 0o600); err != nil {
		return err
	}

	sim, err := devicesim.Start(devicesim.Options{})
	if err != nil {
		return fmt.Errorf("start the simulated iPhone: %w", err)
	}
	defer sim.Close()
	os.Setenv("USBMUXD_SOCKET_ADDRESS", sim.Addr())
	id := devicesim.DefaultIdentity(0)
	id.DeviceName, id.ProductType, id.ProductVersion = "Demo iPhone", "iPhone16,1", "18.1"
	if err := os.MkdirAll(filepath.Join(home, "sim"), 0o700); err != nil {
		return err
	}
	agent, err := backupsim.New(backupsim.Options{
		Identity: backupsim.Identity{UDID: id.UDID, DeviceName: id.DeviceName, ProductType: id.ProductType,
			ProductVersion: id.ProductVersion, BuildVersion: id.BuildVersion, SerialNumber: id.SerialNumber},
		Seed: 1, Files: o.files, TotalSize: o.size, PasscodeDelay: o.passcode,
		TempDir: filepath.Join(home, "sim"),
	})
	if err != nil {
		return err
	}
	p := &demoPrinter{out: out, start: time.Now(), failed: make(chan string, 1), finished: make(chan struct{}, 4)}
	p.say("Snapback demo in %s", home)
	p.say("Simulated iPhone behind usbmuxd at %s (USBMUXD_SOCKET_ADDRESS=%s)", sim.Addr(), sim.Addr())
	if _, err := sim.AddDevice(devicesim.DeviceConfig{Identity: id, Backup: agent, USB: true, BatteryLevel: 76, Charging: true}); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	logPath := filepath.Join(home, "snapback.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer lf.Close()
	log := slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ready := make(chan *jobs.Manager, 1)
	done := make(chan error, 1)
	a := app.New(app.Config{Logger: log, Notifier: p, Tray: o.tray, LogPath: logPath,
		Ready: func(m *jobs.Manager) { ready <- m }})
	go func() { done <- a.Run(ctx) }()
	var m *jobs.Manager
	select {
	case m = <-ready:
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	go p.follow(ctx, m.Bus())

	if o.tray {
		p.say("The tray icon is up; use its menu (Back Up Now, Snapshots…). Quit from the menu or press Ctrl-C.")
		go func() {
			<-waitBackups(ctx, agent, 1)
			agent.Mutate(5)
			p.say("The iPhone changed (5%% of its files); choose Back Up Now in the menu to make a second snapshot.")
		}()
		err := runTray(ctx, func(tctx context.Context) (tray.Controller, <-chan tray.State, error) {
			// The tray's end (signal, Quit) ends the app, which then closes the states.
			context.AfterFunc(tctx, a.Quit)
			return a.Controller(), a.States(), nil
		})
		cancel()
		<-done
		return err
	}

	if err := p.waitRun(done); err != nil {
		return err
	}
	s := agent.Mutate(5)
	p.say("The iPhone changed: %d files added, %d modified, %d deleted. Backing up again by hand (Back Up Now)…", s.Added, s.Modified, s.Deleted)
	if err := m.BackUpNow(ctx, id.UDID); err != nil {
		return err
	}
	if err := p.waitRun(done); err != nil {
		return err
	}
	st, err := a.Stores().ForDevice(ctx, nil, id.UDID, "")
	if err != nil {
		return err
	}
	loc := st.Location()
	snaps, err := st.List(id.UDID)
	if err != nil {
		return err
	}
	p.say("Snapshots of %s in %s:", id.DeviceName, loc)
	for _, sn := range snaps {
		where := sn.Path
		if sn.Latest {
			where += "  (latest, Apple format)"
		}
		fmt.Fprintf(out, "    %s  %-11s  %8s total  %8s own  %s\n", sn.Time.Local().Format("2006-01-02 15:04:05"), sn.Kind,
			humanBytes(sn.TotalSize), humanBytes(sn.UniqueSize), where)
	}
	c := agent.Counters()
	p.say("Done: %d backups (%d full, %d incremental); the device sent %d files, %s. Log: %s",
		c.Backups, c.FullBackups, c.IncrementalBackups, c.FilesUploaded, humanBytes(c.BytesUploaded), logPath)
	if o.home == "" {
		p.say("(The demo home is removed now; run with --home DIR to keep it.)")
	}
	cancel()
	<-done
	return nil
}

// waitBackups closes its channel once the simulated device has completed n backups.
func waitBackups(ctx context.Context, agent *backupsim.Device, n int64) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for agent.Counters().Backups < n && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return ch
}

// waitRun waits for the current backup to commit; a failure or the app's end stops the demo.
func (p *demoPrinter) waitRun(done <-chan error) error {
	select {
	case <-p.finished:
		return nil
	case err := <-done:
		return err
	case reason := <-p.failed:
		return fmt.Errorf("demo: the backup failed: %s", reason)
	}
}

// demoPrinter narrates the demo on the terminal and stands in for desktop notifications.
type demoPrinter struct {
	out   io.Writer
	start time.Time
	// failed receives the reason of a failed run (headless demo: it stops there);
	// finished gets a value per committed run.
	failed   chan string
	finished chan struct{}
}

func (p *demoPrinter) say(format string, args ...any) {
	fmt.Fprintf(p.out, "[%5.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// Notify implements notify.Notifier: the demo prints what a desktop notification would say.
func (p *demoPrinter) Notify(m notify.Message) error {
	p.say("NOTIFICATION  %s — %s", m.Title, m.Body)
	return nil
}

func (p *demoPrinter) follow(ctx context.Context, bus *jobs.Bus) {
	lastPct := -10.0
	bus.Follow(ctx, jobs.AllEvents, func(e jobs.Event) {
		switch e.Type {
		case jobs.EventDeviceAttached:
			p.say("%s attached over USB", e.Name)
		case jobs.EventRunStarted:
			how := "automatic (due today, in its window)"
			if e.Manual {
				how = "manual"
			}
			p.say("Backup of %s started: %s", e.Name, how)
			lastPct = -10
		case jobs.EventProgress:
			if e.Progress.Phase == jobs.PhaseTransferring && e.Progress.Percent >= lastPct+25 {
				lastPct = e.Progress.Percent
				p.say("  %3.0f%%  %s, %d files", e.Progress.Percent, humanBytes(e.Progress.Bytes), e.Progress.Files)
			}
		case jobs.EventPasscodeDismissed:
			p.say("Passcode entered on the device; the backup runs")
		case jobs.EventRunFinished:
			if r := e.Run; r != nil {
				p.say("Backup of %s committed as snapshot %s: %s transferred, backup size %s, %s", e.Name, r.Snapshot,
					humanBytes(r.Bytes), humanBytes(r.Size), r.Dir)
			}
			select {
			case p.finished <- struct{}{}:
			default:
			}
		case jobs.EventRunFailed:
			p.say("Backup of %s failed: %s", e.Name, e.Err)
			if p.failed != nil {
				select {
				case p.failed <- e.Err:
				default:
				}
			}
		}
	})
}
