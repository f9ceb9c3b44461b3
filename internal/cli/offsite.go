package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/offsite"
	"snapback/internal/store"
	"snapback/settings"
)

// newOffsiteCmd is `snapback offsite`: copies of the backups in a restic repository (a
// folder, SFTP, REST, S3, rclone...), driven through restic's command line. The repository
// comes from the settings (offsite.repository, or --repo); its password from the keychain.
func newOffsiteCmd(d deps) *cobra.Command {
	return group("offsite", "Off-site copies of the backups in a restic repository",
		"Copies the latest backup of each device into a restic repository (offsite.repository in the\n"+
			"settings), one restic snapshot per backup, tagged with the device's UDID, name and snapshot ID.\n"+
			"restic must be installed (restic "+offsite.MinVersionText+" or newer). The repository password lives in the\n"+
			"OS keychain and reaches restic through a pipe, never an argument, environment variable or file.",
		newOffsiteInitCmd(d), newOffsiteStatusCmd(d), newOffsitePushCmd(d), newOffsiteListCmd(d),
		newOffsiteRestoreCmd(d), newOffsiteCheckCmd(d))
}

// offsiteFlags pick the device (whose settings name the repository) and may override the
// repository.
type offsiteFlags struct {
	udid string
	repo string
	dir  string
	// secrets is the keychain that holds the repository password.
	secrets settings.Secrets
}

func (f *offsiteFlags) register(cmd *cobra.Command, udidHelp string) {
	cmd.Flags().StringVar(&f.udid, "udid", "", udidHelp)
	cmd.Flags().StringVar(&f.repo, "repo", "", "restic repository (default: offsite.repository from the settings)")
}

// store opens the store of --udid and --location the way every command does (storeFlags).
func (f *offsiteFlags) store(ctx context.Context, needDevice bool) (*store.Store, string, error) {
	return (&storeFlags{udid: f.udid, dir: f.dir}).open(ctx, needDevice)
}

// restic returns the Restic for the flags and the device's effective settings.
func (f *offsiteFlags) restic() (*offsite.Restic, settings.DeviceSettings, error) {
	ds, err := deviceSettings(f.udid)
	if err != nil {
		return nil, ds, err
	}
	if f.repo != "" {
		ds.Offsite.Repository = f.repo
	}
	if !ds.Offsite.Enabled() {
		return nil, ds, offsite.NotConfigured("setup")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return offsite.FromSettings(ds.Offsite, f.secrets, log), ds, nil
}

func newOffsiteInitCmd(d deps) *cobra.Command {
	f := offsiteFlags{secrets: d.secrets}
	var generate, existing bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the restic repository and store its password in the keychain",
		Long: `Creates the repository named by offsite.repository (or --repo), encrypted with a password that is
read from the terminal (or one line of stdin), or generated with --generate and shown once.
With --existing it only checks and stores the password of a repository that exists already.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, _, err := f.restic()
			if err != nil {
				return err
			}
			if _, err := r.CheckVersion(ctx); err != nil {
				return err
			}
			var pw string
			if generate {
				b := make([]byte, 24)
				if _, err := rand.Read(b); err != nil {
					return err
				}
				pw = base64.RawURLEncoding.EncodeToString(b)
			} else if pw, err = readPassword(ctx, cmd.InOrStdin(), cmd.ErrOrStderr(), "restic repository "+r.Repository); err != nil {
				return err
			}
			if existing {
				err = r.Open(ctx, pw)
			} else {
				err = r.Init(ctx, pw)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if generate {
				fmt.Fprintf(out, "Repository password: %s\n", pw)
				fmt.Fprintln(out, "Keep a copy of this password away from this computer (a password manager, or on paper):")
				fmt.Fprintln(out, "without it nobody, you included, can read the off-site copies.")
			}
			if err := f.secrets.Set(ctx, offsite.PasswordAccount(r.Repository), pw); err != nil {
				return fmt.Errorf("the repository is ready but its password could not be stored: %w; "+
					"store it later with `snapback offsite init --existing`", err)
			}
			if existing {
				fmt.Fprintf(out, "the password opens %s; stored it in the keychain\n", r.Repository)
			} else {
				fmt.Fprintf(out, "created the restic repository %s; its password is in the keychain\n", r.Repository)
			}
			return nil
		},
	}
	f.register(cmd, "device whose offsite settings name the repository (default: the global settings)")
	cmd.Flags().BoolVar(&generate, "generate", false, "generate a strong password and show it once")
	cmd.Flags().BoolVar(&existing, "existing", false, "the repository exists: check the password and store it")
	return cmd
}

func newOffsitePushCmd(d deps) *cobra.Command {
	f := offsiteFlags{secrets: d.secrets}
	var snapshot string
	cmd := command("push", "Copy a device's latest backup (or --snapshot) into the repository now", func(cmd *cobra.Command) error {
		ctx := cmd.Context()
		st, udid, err := f.store(ctx, true)
		if err != nil {
			return err
		}
		f.udid = udid
		r, ds, err := f.restic()
		if err != nil {
			return err
		}
		progress := newPushProgress(cmd.ErrOrStderr())
		res, err := offsite.Push(ctx, r, st, udid, offsite.PushOptions{SnapshotID: snapshot,
			Keep: offsite.KeepFrom(ds.Offsite.Keep), Events: progress.event})
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if res.AlreadyThere {
			fmt.Fprintf(out, "%s is already in %s as restic snapshot %s; nothing uploaded\n",
				res.Snapshot.SnapbackID, r.Repository, res.Snapshot.ShortID)
			return nil
		}
		s := res.Summary
		fmt.Fprintf(out, "copied %s of %s to %s as restic snapshot %s: %d files (%d new, %d changed, %d unchanged), %s read, %s added to the repository in %.1f s\n",
			res.Snapshot.SnapbackID, udid, r.Repository, res.Snapshot.ShortID, s.TotalFilesProcessed, s.FilesNew,
			s.FilesChanged, s.FilesUnmodified, humanBytes(s.TotalBytesProcessed), humanBytes(s.DataAdded), s.TotalDuration)
		if len(res.Forgotten) > 0 {
			fmt.Fprintf(out, "removed %d older off-site snapshots (offsite.keep)\n", len(res.Forgotten))
		}
		return nil
	})
	f.register(cmd, "device UDID (default: the only device at the location)")
	cmd.Flags().StringVar(&f.dir, "location", "", "the store location (default: the device's location in the settings)")
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "Snapback snapshot ID to copy (default: the latest backup)")
	return cmd
}

// pushProgress prints restic's progress every 10 %.
type pushProgress struct {
	w    io.Writer
	next float64
}

func newPushProgress(w io.Writer) *pushProgress { return &pushProgress{w: w} }

func (p *pushProgress) event(ev offsite.Event) {
	switch ev.Kind {
	case offsite.EventStatus:
		if ev.Status.PercentDone >= p.next && ev.Status.TotalBytes > 0 {
			fmt.Fprintf(p.w, "uploading: %3.0f%%  %s of %s, %d of %d files\n", ev.Status.PercentDone*100,
				humanBytes(ev.Status.BytesDone), humanBytes(ev.Status.TotalBytes), ev.Status.FilesDone, ev.Status.TotalFiles)
			p.next = float64(int(ev.Status.PercentDone*10)+1) / 10
		}
	case offsite.EventError:
		fmt.Fprintf(p.w, "restic: %s\n", ev.Error)
	}
}

func newOffsiteListCmd(d deps) *cobra.Command {
	f := offsiteFlags{secrets: d.secrets}
	var asJSON, all bool
	cmd := command("list", "List the off-site snapshots (of --udid, or of every device)", func(cmd *cobra.Command) error {
		r, _, err := f.restic()
		if err != nil {
			return err
		}
		snaps, err := r.Snapshots(cmd.Context(), f.udid)
		if err != nil {
			return err
		}
		if asJSON {
			type row struct {
				ID         string    `json:"id"`
				Time       time.Time `json:"time"`
				UDID       string    `json:"udid"`
				Device     string    `json:"device"`
				SnapbackID string    `json:"snapshot"`
				Host       string    `json:"host"`
			}
			rows := []row{}
			for _, s := range snaps {
				rows = append(rows, row{s.ID, s.Time, s.UDID, s.DeviceName, s.SnapbackID, s.Hostname})
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(rows)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RESTIC ID\tTIME\tDEVICE\tUDID\tSNAPSHOT")
		for _, s := range snaps {
			if s.UDID == "" && !all {
				continue // not made by Snapback
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ShortID, s.Time.Local().Format("2006-01-02 15:04"), s.DeviceName, s.UDID, s.SnapbackID)
		}
		return tw.Flush()
	})
	f.register(cmd, "only this device's snapshots")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&all, "all", false, "also list snapshots Snapback did not make")
	return cmd
}

func newOffsiteStatusCmd(d deps) *cobra.Command {
	f := offsiteFlags{secrets: d.secrets}
	cmd := command("status", "Say whether each device's latest backup is in the off-site repository", func(cmd *cobra.Command) error {
		ctx := cmd.Context()
		st, _, err := f.store(ctx, false)
		if err != nil {
			return err
		}
		udids := []string{f.udid}
		if f.udid == "" {
			if udids, err = st.Devices(); err != nil {
				return err
			}
		}
		out := cmd.OutOrStdout()
		for _, udid := range udids {
			f.udid = udid
			r, ds, err := f.restic()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s: repository %s, schedule %s", udid, r.Repository, ds.Offsite.Schedule)
			if ds.Offsite.LimitUploadKiB > 0 {
				fmt.Fprintf(out, ", upload limit %s", settings.FormatRate(ds.Offsite.LimitUploadKiB))
			}
			fmt.Fprintln(out)
			snaps, err := r.Snapshots(ctx, udid)
			if err != nil {
				return err
			}
			latest, lerr := st.Get(udid, "latest")
			switch {
			case len(snaps) == 0:
				fmt.Fprintln(out, "  no off-site copy yet (snapback offsite push)")
			default:
				last := snaps[len(snaps)-1]
				fmt.Fprintf(out, "  %d off-site snapshots; newest %s (backup %s, %s)\n", len(snaps), last.ShortID,
					last.SnapbackID, last.Time.Local().Format("2006-01-02 15:04"))
			}
			if lerr == nil {
				have := false
				for _, s := range snaps {
					have = have || s.SnapbackID == latest.ID
				}
				if have {
					fmt.Fprintf(out, "  up to date: the latest backup %s is off-site\n", latest.ID)
				} else {
					fmt.Fprintf(out, "  behind: the latest backup %s is not off-site yet\n", latest.ID)
				}
			}
		}
		return nil
	})
	f.register(cmd, "device UDID (default: every device at the location)")
	cmd.Flags().StringVar(&f.dir, "location", "", "the store location (default: the device's location in the settings)")
	return cmd
}

func newOffsiteRestoreCmd(d deps) *cobra.Command {
	f := offsiteFlags{secrets: d.secrets}
	var snapshot, to string
	cmd := &cobra.Command{
		Use:   "restore --udid UDID [--snapshot ID] --to DIR",
		Short: "Bring a backup back from the repository as a standard backup folder DIR/<UDID>",
		Long: "Restores a device's off-site snapshot (the newest, or --snapshot: a restic snapshot ID or a\n" +
			"Snapback snapshot ID) into DIR/<UDID>/, a standard Apple backup folder, after verifying it like\n" +
			"any backup (Manifest.db opens, every file has its data). Restore it to the phone with\n" +
			"`snapback restore --dir DIR`. On a new computer, give the (empty) backup location as DIR: the\n" +
			"next backup adopts the restored folder as its latest and continues incrementally from it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.udid == "" || to == "" {
				return errors.New("give --udid and --to (see `snapback offsite list`)")
			}
			r, _, err := f.restic()
			if err != nil {
				return err
			}
			res, err := offsite.Restore(cmd.Context(), r, f.udid, snapshot, to)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored restic snapshot %s (backup %s of %s) to %s; verified\n",
				res.Snapshot.ShortID, res.Snapshot.SnapbackID, res.Snapshot.DeviceName, res.Dir)
			return nil
		},
	}
	f.register(cmd, "device UDID")
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "restic or Snapback snapshot ID (default: the newest)")
	cmd.Flags().StringVar(&to, "to", "", "folder to restore into; the backup becomes DIR/<UDID>")
	return cmd
}

func newOffsiteCheckCmd(d deps) *cobra.Command {
	f := offsiteFlags{secrets: d.secrets}
	var subset string
	cmd := command("check", "Check the repository's consistency (restic check)", func(cmd *cobra.Command) error {
		r, _, err := f.restic()
		if err != nil {
			return err
		}
		out, err := r.Check(cmd.Context(), offsite.CheckOptions{ReadDataSubset: subset})
		fmt.Fprint(cmd.OutOrStdout(), out)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s is consistent\n", r.Repository)
		return nil
	})
	f.register(cmd, "device whose offsite settings name the repository")
	cmd.Flags().StringVar(&subset, "read-data-subset", "", `also read and verify this part of the data ("10%", "1/5", "100%")`)
	return cmd
}
