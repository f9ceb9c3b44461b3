package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/app"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/settings"
)

// storeFlags are the flags every snapshot command shares. --location is a store location
// as in every command; --dir (one backup folder elsewhere) is refused here with the fix.
type storeFlags struct {
	udid    string
	dir     string // the store location (--location)
	misused string // --dir given: it names one backup folder, not a store
}

func (f *storeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.udid, "udid", "", "device `UDID` (default: the only device at the location)")
	cmd.Flags().StringVar(&f.dir, "location", "", "the store location (default: the device's location in the settings)")
	cmd.Flags().StringVar(&f.misused, "dir", "", "not for snapshots: use --location")
	cmd.Flags().MarkHidden("dir")
}

// deviceSettings returns the effective settings of udid; a missing settings file means the
// built-in defaults.
func deviceSettings(udid string) (settings.DeviceSettings, error) {
	_, s, err := settingsFile()
	if err != nil {
		return settings.DeviceSettings{}, err
	}
	return s.Effective(udid), nil
}

// open opens the device's store the one settings-aware way (app.Stores.ForDevice: --location,
// else the device's location in the settings) and picks the device, matching --udid in any
// letter case. needDevice makes a missing --udid an error unless exactly one device has
// backups there.
func (f *storeFlags) open(ctx context.Context, needDevice bool) (*store.Store, string, error) {
	if f.misused != "" {
		return nil, "", failure.Newf(failure.Usage, "--dir names one backup folder; snapshots live in a store").
			WithFix("pass the store location with --location " + f.misused)
	}
	cfg, err := loadSettings()
	if err != nil {
		return nil, "", err
	}
	stores := &app.Stores{Now: time.Now, NoCreate: true,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	s, err := stores.ForDevice(ctx, cfg, f.udid, f.dir)
	if err != nil {
		return nil, "", err
	}
	devs, err := s.Devices()
	if err != nil {
		return nil, "", err
	}
	if f.udid != "" {
		for _, d := range devs {
			if strings.EqualFold(d, f.udid) {
				return s, d, nil
			}
		}
		if needDevice {
			return nil, "", failure.Newf(failure.NoBackup, "no backups of %s at %s", f.udid, s.Location())
		}
		return s, f.udid, nil
	}
	if !needDevice {
		return s, "", nil
	}
	switch len(devs) {
	case 1:
		return s, devs[0], nil
	case 0:
		return nil, "", failure.Newf(failure.NoBackup, "no backups at %s", s.Location())
	}
	return nil, "", &failure.Error{Class: failure.Usage, Detail: fmt.Sprintf("%d devices have backups at %s", len(devs), s.Location()),
		Fix: "choose one with --udid (snapback snapshots lists them)"}
}

func newSnapshotsCmd() *cobra.Command {
	var f storeFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List backup snapshots and archives with their sizes",
		Long: `List the snapshots of each device: date, kind, total size, the bytes only that snapshot
holds (hard links shared with other snapshots are not counted twice), and pins.
Subcommands delete, archive, export, verify, pin and unpin act on one snapshot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, udid, err := f.open(cmd.Context(), false)
			if err != nil {
				return err
			}
			devs := []string{udid}
			if udid == "" {
				if devs, err = s.Devices(); err != nil {
					return err
				}
			}
			var all []store.Snapshot
			for _, d := range devs {
				l, err := s.List(d)
				if err != nil {
					return err
				}
				all = append(all, l...)
			}
			if asJSON {
				return writeSnapshotsJSON(cmd.OutOrStdout(), all)
			}
			if len(all) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no backups at %s\n", s.Location())
				return nil
			}
			writeSnapshotsTable(cmd.OutOrStdout(), all)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(newSnapshotsDeleteCmd(), newSnapshotsArchiveCmd(), newSnapshotsExportCmd(),
		withDataFlag(newSnapshotsVerifyCmd()), newSnapshotsPinCmd(true), newSnapshotsPinCmd(false))
	return cmd
}

// snapshotJSON is the --json shape: the record plus where it lives and whether it is the
// latest backup.
type snapshotJSON struct {
	store.Snapshot
	Latest bool   `json:"latest"`
	Path   string `json:"path"`
}

func writeSnapshotsJSON(w io.Writer, all []store.Snapshot) error {
	out := make([]snapshotJSON, 0, len(all))
	for _, s := range all {
		out = append(out, snapshotJSON{Snapshot: s, Latest: s.Latest, Path: s.Path})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeSnapshotsTable(w io.Writer, all []store.Snapshot) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tID\tDATE\tKIND\tSIZE\tUNIQUE\tFILES\tPINNED")
	for _, s := range all {
		kind := string(s.Kind)
		if s.Latest {
			kind += " (latest)"
		}
		if s.Encrypted {
			kind += ", encrypted"
		}
		pinned := ""
		if s.Pinned {
			pinned = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", deviceLabel(s), s.ID, s.Time.Local().Format("2006-01-02 15:04"),
			kind, humanBytes(s.TotalSize), humanBytes(s.UniqueSize), s.FileCount, pinned)
	}
	tw.Flush()
}

func deviceLabel(s store.Snapshot) string {
	if s.Device.Name != "" {
		return s.Device.Name
	}
	return s.UDID
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// deviceStoreCmd is a subcommand that acts on one device's snapshots: it opens the store the
// one settings-aware way (storeFlags) and picks the device before run.
func deviceStoreCmd(use, short string, args cobra.PositionalArgs, run func(cmd *cobra.Command, s *store.Store, udid string, args []string) error) *cobra.Command {
	var f storeFlags
	cmd := &cobra.Command{Use: use, Short: short, Args: args, RunE: func(cmd *cobra.Command, args []string) error {
		s, udid, err := f.open(cmd.Context(), true)
		if err != nil {
			return err
		}
		return run(cmd, s, udid, args)
	}}
	f.register(cmd)
	return cmd
}

func newSnapshotsDeleteCmd() *cobra.Command {
	return deviceStoreCmd("delete ID...", "Delete snapshots (never the latest backup; unpin pinned ones first)", cobra.MinimumNArgs(1),
		func(cmd *cobra.Command, s *store.Store, udid string, args []string) error {
			for _, id := range args {
				// Resolve first so that a typo is an error, not an idempotent no-op, and
				// "latest" is refused as the latest rather than as an unknown name.
				sn, err := s.Get(udid, id)
				if err != nil {
					return err
				}
				if sn.Latest {
					return fmt.Errorf("%s is the latest backup, which is never deleted: %w", sn.ID, store.ErrProtected)
				}
				if err := s.Delete(cmd.Context(), udid, sn.ID); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", sn.ID)
			}
			return nil
		})
}

func newSnapshotsArchiveCmd() *cobra.Command {
	return deviceStoreCmd("archive [ID]", "Keep a snapshot (default: the latest backup) as a pinned archive <UDID>-YYYYMMDD-HHMMSS", cobra.MaximumNArgs(1),
		func(cmd *cobra.Command, s *store.Store, udid string, args []string) error {
			id := "latest"
			if len(args) == 1 {
				id = args[0]
			}
			a, err := s.Archive(cmd.Context(), udid, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "archived %s to %s\n", a.Source, a.Path)
			return nil
		})
}

func newSnapshotsExportCmd() *cobra.Command {
	return deviceStoreCmd("export ID DEST", "Copy a snapshot to DEST/<UDID>/ as a standalone Apple backup folder", cobra.ExactArgs(2),
		func(cmd *cobra.Command, s *store.Store, udid string, args []string) error {
			out, err := s.Export(cmd.Context(), udid, args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %s to %s\n", args[0], out)
			return nil
		})
}

func newSnapshotsVerifyCmd() *cobra.Command {
	return deviceStoreCmd("verify [ID...]", "Re-check snapshots (default: all): plists, Manifest.db and every blob", cobra.ArbitraryArgs,
		func(cmd *cobra.Command, s *store.Store, udid string, args []string) error {
			if len(args) == 0 {
				l, err := s.List(udid)
				if err != nil {
					return err
				}
				for _, sn := range l {
					args = append(args, sn.ID)
				}
			}
			var failed []error
			for _, id := range args {
				start := time.Now()
				if err := s.Verify(cmd.Context(), udid, id); err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "FAILED %s: %v\n", id, err)
					failed = append(failed, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ok     %s (%s)\n", id, time.Since(start).Round(time.Millisecond))
			}
			if len(failed) > 0 {
				return failure.New(failure.Damaged, fmt.Errorf("%d of %d snapshots failed verification: %w", len(failed), len(args), errors.Join(failed...)))
			}
			return nil
		})
}

func newSnapshotsPinCmd(pin bool) *cobra.Command {
	use, short := "pin ID", "Protect a snapshot from automatic deletion"
	if !pin {
		use, short = "unpin ID", "Let retention delete a snapshot or archive again"
	}
	return deviceStoreCmd(use, short, cobra.ExactArgs(1), func(_ *cobra.Command, s *store.Store, udid string, args []string) error {
		if pin {
			return s.Pin(udid, args[0])
		}
		return s.Unpin(udid, args[0])
	})
}
