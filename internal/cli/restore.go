package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"snapback/internal/browse"
	"snapback/internal/engine"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/settings"
)

type restoreFlags struct {
	udid         string
	snapshot     string
	location     string
	dir          string
	system       bool
	settings     bool
	noReboot     bool
	fromKeychain bool
	yes          bool
	secrets      settings.Secrets // for --password-from-keychain
}

func newRestoreCmd(d deps) *cobra.Command {
	f := restoreFlags{secrets: d.secrets}
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a device from its latest backup or any snapshot",
		Long: `Restore a connected iPhone or iPad from a backup: by default the latest backup in the
snapshot store, or --snapshot ID (see snapback snapshots), or a plain backup folder --dir.
Restoring replaces the device's content. Like iTunes, the current latest backup is first
archived (kept pinned as <UDID>-YYYYMMDD-HHMMSS) so nothing is lost. The backup being
restored is only read, never changed. The password of an encrypted backup is read from
the terminal without echo, or from the OS keychain with --password-from-keychain.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			return runRestore(ctx, f, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.udid, "udid", "", "device to restore (required)")
	fl.StringVar(&f.snapshot, "snapshot", "", "restore this snapshot `ID` instead of the latest backup")
	fl.StringVar(&f.location, "location", "", "the store location (default: the device's location in the settings)")
	fl.StringVar(&f.dir, "dir", "", "restore the backup folder `DIR` instead of the store: the <UDID> folder, or the folder holding it (what backup --dir writes)")
	fl.BoolVar(&f.system, "system", false, "restore system files too")
	fl.BoolVar(&f.settings, "settings", false, "restore the device settings from the backup (default: keep the current ones)")
	fl.BoolVar(&f.noReboot, "no-reboot", false, "do not reboot the device when the restore is done")
	fl.BoolVar(&f.fromKeychain, "password-from-keychain", false, "take the backup password from the OS keychain (see snapback password)")
	fl.BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation")
	_ = cmd.MarkFlagRequired("udid")
	cmd.MarkFlagsMutuallyExclusive("dir", "snapshot")
	cmd.MarkFlagsMutuallyExclusive("dir", "location")
	return cmd
}

// restoreSource is what runRestore restores from; st is nil for --dir.
type restoreSource struct {
	dir   string
	label string
	st    *store.Store
}

func resolveRestoreSource(ctx context.Context, f restoreFlags) (restoreSource, error) {
	if f.dir != "" {
		dir, err := backupFolder(f.dir, f.udid)
		if err != nil {
			return restoreSource{}, err
		}
		// A truncated or damaged folder is refused here, before the device is contacted.
		if err := browse.Validate(ctx, dir); err != nil {
			return restoreSource{}, err
		}
		st, err := archiveStoreFor(ctx, dir, f.udid)
		if err != nil {
			return restoreSource{}, err
		}
		return restoreSource{dir: dir, label: dir, st: st}, nil
	}
	st, _, err := (&storeFlags{udid: f.udid, dir: f.location}).open(ctx, false)
	if err != nil {
		return restoreSource{}, err
	}
	id := f.snapshot
	if id == "" {
		id = "latest"
	}
	snap, err := st.Get(f.udid, id)
	if err != nil {
		return restoreSource{}, err
	}
	label := "snapshot " + snap.ID
	if snap.Latest {
		label = "the latest backup (" + snap.ID + ")"
	}
	return restoreSource{dir: snap.Path, label: label + " of " + snap.Time.Local().Format("2006-01-02 15:04"), st: st}, nil
}

// archiveStoreFor finds the store whose latest backup of udid is archived before a restore
// from the folder dir: the store dir lies in, else the device's configured location. Nil
// when the device has no latest backup there; a store is never created for this.
func archiveStoreFor(ctx context.Context, dir, udid string) (*store.Store, error) {
	loc := filepath.Dir(dir)
	if _, err := os.Stat(filepath.Join(loc, store.VersionsDirName)); err != nil {
		ds, err := deviceSettings(udid)
		if err != nil {
			return nil, err
		}
		if loc, err = store.ResolveLocation(ds.Location); err != nil {
			return nil, nil // no usable configured location: nothing to archive
		}
	}
	if _, err := os.Stat(filepath.Join(loc, udid)); err != nil {
		return nil, nil
	}
	st, _, err := (&storeFlags{udid: udid, dir: loc}).open(ctx, false)
	return st, err
}

func runRestore(ctx context.Context, f restoreFlags, in io.Reader, stdout, stderr io.Writer) error {
	src, err := resolveRestoreSource(ctx, f)
	if err != nil {
		return err
	}
	if !f.yes {
		what := "its content"
		if f.settings {
			what = "its content and settings"
		}
		fmt.Fprintf(stderr, "Restore %s to device %s? This replaces %s. Type yes to continue: ", src.label, f.udid, what)
		answer, err := readAnswer(ctx, in)
		if err != nil {
			return err
		}
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return failure.Newf(failure.Cancelled, "restore not confirmed; the device was not changed")
		}
	}
	// As iTunes does: the current latest backup is kept as a pinned archive first, so the
	// state of the device before the restore can be got back (the next backup replaces latest).
	if src.st != nil {
		a, err := src.st.Archive(ctx, f.udid, "latest")
		switch {
		case errors.Is(err, store.ErrNotFound):
			fmt.Fprintln(stderr, "No latest backup to archive.")
		case err != nil:
			return fmt.Errorf("archive the latest backup before restoring (nothing was restored): %w", err)
		default:
			fmt.Fprintf(stderr, "Archived the latest backup (%s) to %s (pinned).\n", a.Source, a.Path)
			if latest := src.st.LatestDir(f.udid); src.dir == latest && !pathExists(latest) {
				// On a full disk the latest folder was renamed to the archive: restore from there.
				src.dir = a.Path
			}
		}
	}

	password := terminalPassword(ctx, in, stderr, src.label)
	if f.fromKeychain {
		password = func() ([]byte, error) {
			pw, err := f.secrets.Get(ctx, f.udid)
			if err != nil {
				return nil, fmt.Errorf("backup password from the keychain: %w", err)
			}
			return []byte(pw), nil
		}
	}

	var view progressView = &lineView{w: stderr}
	if isTerminal(stderr) {
		view = &barView{w: stderr}
	}
	devs, err := deviceHost(nil)
	if err != nil {
		return err
	}
	defer devs.Close()
	events, done := render(view)
	res, err := engine.Restore(ctx, engine.RestoreRequest{
		Devices:          devs,
		UDID:             f.udid,
		SourceDir:        src.dir,
		System:           f.system,
		PreserveSettings: !f.settings,
		Reboot:           !f.noReboot,
		Password:         password,
		Events:           events,
	})
	done()
	if bv, ok := view.(*barView); ok {
		bv.clear()
	}
	if err != nil {
		return err
	}
	secs := res.Finished.Sub(res.Started).Seconds()
	fmt.Fprintf(stdout, "Restored %s to %s (%s, %s): %d files, %s in %.1fs\n", src.label, res.Device.Name,
		res.Device.ProductType, res.UDID, res.Restore.FilesSent, mb(res.Restore.BytesSent), secs)
	if !f.noReboot {
		fmt.Fprintln(stdout, "The device restarts now.")
	}
	return nil
}

// readAnswer reads one line byte by byte, so that a password piped on the next line is left
// for terminalPassword. Cancelling ctx stops waiting.
func readAnswer(ctx context.Context, in io.Reader) (string, error) {
	type result struct {
		s   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		var b strings.Builder
		one := make([]byte, 1)
		for b.Len() < 256 {
			n, err := in.Read(one)
			if n == 1 {
				if one[0] == '\n' {
					break
				}
				b.WriteByte(one[0])
				continue
			}
			if err != nil {
				if errors.Is(err, io.EOF) && b.Len() > 0 {
					break
				}
				done <- result{"", fmt.Errorf("confirmation: %w (use --yes to skip it)", err)}
				return
			}
		}
		done <- result{b.String(), nil}
	}()
	select {
	case r := <-done:
		return r.s, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func pathExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
