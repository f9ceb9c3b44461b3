package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/app"
	"snapback/internal/engine"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/settings"
)

type backupFlags struct {
	udid     string
	full     bool
	dir      string
	location string
	asJSON   bool
	// secrets is the keychain the device's encryption setting needs (nil: none).
	secrets settings.Secrets
	// passcodeCancelWindow is app.Backups.PasscodeCancelWindow (0: the engine's default).
	passcodeCancelWindow time.Duration
}

func newBackupCmd() *cobra.Command {
	var f backupFlags
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up a device now",
		Long: `Back up a connected iPhone or iPad now. Without --dir the backup goes into the device's
snapshot store (its location from the settings, or --location): the previous backup becomes
a snapshot, the new one is committed only once complete and verified, and retention runs,
with the device's settings (encryption, snapshots) applied as the scheduled backups do.
With --dir it writes a plain Apple backup folder DIR/<UDID>/ in place (Finder, iTunes and
idevicebackup2 read it), incremental when DIR already holds the device's previous backup;
DIR must not be a snapshot store location.
On iOS 16.1 and later, enter the passcode on the device when it asks. A backup made here
counts as the device's backup of the day for the schedule.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			f.secrets = settings.NewKeyring(0)
			return runBackup(ctx, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&f.udid, "udid", "", "device to back up (default: the only connected device)")
	cmd.Flags().BoolVar(&f.full, "full", false, "force a full backup")
	cmd.Flags().StringVar(&f.dir, "dir", "", "write a plain backup folder into `DIR` (DIR/<UDID>/) instead of the snapshot store")
	cmd.Flags().StringVar(&f.location, "location", "", "the store location (default: the device's location in the settings)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print progress and the result as JSON lines")
	cmd.MarkFlagsMutuallyExclusive("dir", "location")
	return cmd
}

func runBackup(ctx context.Context, f backupFlags, stdout, stderr io.Writer) error {
	var view progressView
	switch {
	case f.asJSON:
		view = &jsonView{enc: json.NewEncoder(stdout)}
	case isTerminal(stderr):
		view = &barView{w: stderr}
	default:
		view = &lineView{w: stderr}
	}
	var sum runSummary
	var err error
	var upkeep func(ctx, hurry context.Context) app.Upkeep
	if f.dir != "" {
		sum, err = backupToDir(ctx, f, view)
	} else {
		sum, upkeep, err = backupToStore(ctx, f, view)
	}
	// The summary goes to stdout (progress went to stderr); a failure is printed once, by Main.
	view.result(sum, err)
	if err == nil && !f.asJSON {
		printResult(stdout, sum)
	}
	if err == nil {
		printUnreadable(stderr, sum.Unreadable)
	}
	if upkeep != nil {
		// After the summary: nobody waits for it, but a store on a removable disk is only
		// known to be there now. Interrupting it loses nothing (the scrub resumes after the
		// next backup, which then clones the latest itself).
		view.upkeep(true)
		u := upkeep(ctx, ctx) // nothing else of this command waits for it
		view.upkeep(false)
		if u.Damaged > 0 {
			printDamaged(stdout, f.asJSON, u.Damaged)
		}
	}
	return err
}

// printDamaged tells of damaged files the scrub after the backup found: a warning line, or
// with --json an object of kind "damage".
func printDamaged(w io.Writer, asJSON bool, files int) {
	if asJSON {
		_ = json.NewEncoder(w).Encode(struct {
			Kind    string `json:"kind"`
			Damaged int    `json:"damaged"`
			Message string `json:"message"`
		}{"damage", files, app.DamagedText(files)})
		return
	}
	fmt.Fprintf(w, "warning: %s\n", app.DamagedText(files))
}

// backupToStore runs the one backup orchestration, as the daemon and the tray do.
func backupToStore(ctx context.Context, f backupFlags, view progressView) (runSummary, func(ctx, hurry context.Context) app.Upkeep, error) {
	cfg, err := loadSettings()
	if err != nil {
		return runSummary{}, nil, err
	}
	devs := app.DeviceHost(cfg, nil) // finds the device over usbmuxd and, as set, over Wi-Fi itself
	defer devs.Close()
	b := &app.Backups{Settings: func() *settings.Settings { return cfg }, Stores: &app.Stores{Now: time.Now},
		Secrets: f.secrets, Now: time.Now, PasscodeCancelWindow: f.passcodeCancelWindow, Devices: devs}
	events, done := render(view)
	out, err := b.Run(ctx, app.BackupRequest{UDID: f.udid, Location: f.location, Full: f.full, Events: events})
	done()
	return storeSummary(out), out.Upkeep, err
}

func storeSummary(out app.Outcome) runSummary {
	s := runSummary{UDID: out.UDID, Name: out.Device.Name, ProductType: out.Device.ProductType, Device: out.Device,
		Dir: out.Dir, Location: out.Location, Snapshot: out.Snapshot, Full: out.Full, Files: out.Files,
		Bytes: out.Bytes, Size: out.Size, Seconds: out.Duration().Seconds(), Warnings: out.Warnings, Unreadable: out.Unreadable}
	if a := out.Approval; a != nil {
		s.Warnings = append(s.Warnings, "retention wants to "+a.Summary+" ("+humanBytes(a.Bytes)+"); run snapback prune --udid "+out.UDID+" --yes to allow it")
	}
	return s
}

// backupToDir writes a plain backup folder in place: no store, no snapshots.
func backupToDir(ctx context.Context, f backupFlags, view progressView) (runSummary, error) {
	abs, err := filepath.Abs(f.dir)
	if err != nil {
		return runSummary{}, failure.New(failure.Usage, err)
	}
	if err := refuseStoreLocation(abs); err != nil {
		return runSummary{}, err
	}
	devs, err := deviceHost(nil)
	if err != nil {
		return runSummary{}, err
	}
	defer devs.Close()
	// The device first: a wrong UDID creates no folder.
	dev, err := app.FindDevice(ctx, devs, f.udid)
	if err != nil {
		return runSummary{}, err
	}
	events, done := render(view)
	res, err := engine.Backup(ctx, engine.Request{Devices: devs, UDID: dev.UDID, Root: abs, Full: f.full, Events: events})
	done()
	return runSummary{UDID: res.UDID, Name: res.Device.Name, ProductType: res.Device.ProductType, Device: res.Device,
		Dir: res.Dir, Full: res.Backup.FullBackup, Files: res.Backup.FilesReceived, Bytes: res.Backup.BytesReceived,
		Seconds: res.Finished.Sub(res.Started).Seconds(), Unreadable: res.Backup.Unreadable}, err
}

// refuseStoreLocation refuses --dir pointing into a snapshot store: writing there in place
// would change the committed latest backup (and every snapshot that shares its files).
func refuseStoreLocation(dir string) error {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, store.VersionsDirName)); err == nil {
			return &failure.Error{Class: failure.Usage,
				Detail: dir + " is inside the snapshot store at " + d + "; writing there would change its committed backups",
				Fix:    "run snapback backup without --dir (or with --location " + d + ") to back up into the store, or give --dir a folder outside it"}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return nil
		}
		d = parent
	}
}

// loadSettings reads the settings file once; a missing file means the defaults.
func loadSettings() (*settings.Settings, error) {
	_, s, err := settingsFile()
	return s, err
}

// settingsFile is the one way commands read the settings: the file's path and its settings
// (the defaults when there is no file). An invalid file is the Config class (exit 2), with
// every problem named by settings.Load.
func settingsFile() (string, *settings.Settings, error) {
	path, err := settings.ConfigPath()
	if err != nil {
		return "", nil, err
	}
	s, err := settings.Load(path)
	if err != nil {
		return path, nil, &failure.Error{Class: failure.Config, Cause: err}
	}
	return path, s, nil
}
