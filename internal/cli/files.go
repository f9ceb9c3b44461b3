package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
	"snapback/internal/browse"
	"snapback/internal/failure"
	"snapback/settings"
)

// backupSource names the backup folder the browse commands read: either --dir, a backup
// folder itself, or --udid with an optional --snapshot, resolved through the snapshot store
// at --location.
type backupSource struct {
	dir      string
	udid     string
	snapshot string
	location string
	secrets  settings.Secrets // holds the password of an encrypted backup
}

func (s *backupSource) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.dir, "dir", "", "a backup folder: the <UDID> folder holding Manifest.db, or the folder holding it")
	f.StringVar(&s.udid, "udid", "", "read the latest backup of this device from its snapshot store")
	f.StringVar(&s.snapshot, "snapshot", "", "with --udid: read the snapshot with this `ID` instead of the latest (snapback snapshots lists them)")
	f.StringVar(&s.location, "location", "", "with --udid: the store location (default: the device's location in the settings)")
	cmd.MarkFlagsMutuallyExclusive("dir", "udid")
	cmd.MarkFlagsOneRequired("dir", "udid")
}

// resolve returns the backup folder to read and the UDID whose keychain password may open
// it ("" when unknown).
func (s *backupSource) resolve(ctx context.Context) (dir, udid string, err error) {
	if s.dir != "" {
		if s.snapshot != "" || s.location != "" {
			return "", "", failure.Newf(failure.Usage, "--snapshot and --location go with --udid, not --dir").
				WithFix("read a snapshot with --udid UDID --snapshot ID, or pass its folder as --dir")
		}
		dir, err := backupFolder(s.dir, "")
		if err != nil {
			return "", "", err
		}
		return dir, udidOfFolder(dir), nil
	}
	// The one settings-aware lookup every command uses (app.Stores.ForDevice through
	// storeFlags.open): --location, else the device's location in the settings; a failed
	// start-up recovery is an error here as everywhere, and --udid matches in any letter case.
	st, udid, err := (&storeFlags{udid: s.udid, dir: s.location}).open(ctx, false)
	if err != nil {
		return "", "", err
	}
	if s.snapshot == "" {
		// Waits out another process's commit (the latest folder is renamed for a moment),
		// then says busy rather than "no backup".
		dir, err := st.LatestForReading(ctx, udid, 10*time.Second)
		if failure.ClassOf(err) == failure.NoBackup {
			return "", "", failure.Newf(failure.NoBackup, "no backup of %s at %s", udid, st.Location()).
				WithFix("check --udid (snapback snapshots lists the devices with backups) and --location")
		}
		if err != nil {
			return "", "", err
		}
		return dir, udid, nil
	}
	snap, err := st.Get(udid, s.snapshot)
	if err != nil {
		return "", "", err
	}
	return snap.Path, udid, nil
}

// udidOfFolder is the device a backup folder belongs to, from its name: <UDID> for a latest
// backup or a plain one, <UDID>-YYYYMMDD-HHMMSS for an archive; "" otherwise.
func udidOfFolder(dir string) string {
	name := filepath.Base(dir)
	const stamp = len("-20060102-150405")
	if p, _ := settings.CheckUDID(name); p == "" {
		return name
	}
	if len(name) > stamp {
		if p, _ := settings.CheckUDID(name[:len(name)-stamp]); p == "" {
			return name[:len(name)-stamp]
		}
	}
	return ""
}

// open resolves and opens the backup. An encrypted one is opened with the password the
// keychain holds for its device; the terminal (or stdin) is asked only when none is stored,
// or when the stored one no longer opens it. The key is derived once per run and kept in
// memory only.
func (s *backupSource) open(ctx context.Context, cmd *cobra.Command) (*browse.Backup, error) {
	dir, udid, err := s.resolve(ctx)
	if err != nil {
		return nil, err
	}
	typed := terminalPassword(ctx, cmd.InOrStdin(), cmd.ErrOrStderr(), dir)
	if udid == "" {
		return openBackup(ctx, dir, typed)
	}
	fromKeychain := false
	b, err := openBackup(ctx, dir, func() ([]byte, error) {
		pw, err := s.secrets.Get(ctx, udid)
		switch {
		case err == nil:
			fromKeychain = true
			return []byte(pw), nil
		case !errors.Is(err, settings.ErrSecretNotFound):
			fmt.Fprintf(cmd.ErrOrStderr(), "snapback: %s\n", failure.Text(&failure.Error{Class: failure.Keychain, Detail: "asking for the password instead", Cause: err}))
		}
		return typed()
	})
	if fromKeychain && errors.Is(err, failure.WrongPassword) {
		fmt.Fprintf(cmd.ErrOrStderr(), "the keychain's password for %s does not open this backup (it was made with another one); `snapback password set --udid %s` replaces it\n", udid, udid)
		return openBackup(ctx, dir, typed)
	}
	if err == nil {
		for _, w := range b.Warnings() {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
		}
	}
	return b, err
}

func openBackup(ctx context.Context, dir string, password func() ([]byte, error)) (*browse.Backup, error) {
	b, err := browse.Open(ctx, dir, browse.Options{Password: password})
	if errors.Is(err, backupcrypto.ErrWrongPassword) {
		return nil, failure.New(failure.WrongPassword, err)
	}
	return b, err
}

// browseCmd completes c as one of the commands that read a backup (files, extract, photos):
// the backupSource flags pick the backup, which is opened (with the keychain's password)
// for use; Ctrl-C cancels it, so the decrypted Manifest.db is removed, not left behind. The
// backup is closed afterwards, and a failed close is the error when use succeeded.
func browseCmd(d deps, c *cobra.Command, use func(ctx context.Context, cmd *cobra.Command, b *browse.Backup, args []string) error) *cobra.Command {
	src := backupSource{secrets: d.secrets}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		ctx, stop := signalContext(cmd)
		defer stop()
		b, err := src.open(ctx, cmd)
		if err != nil {
			return err
		}
		err = use(ctx, cmd, b, args)
		if cerr := b.Close(); err == nil {
			err = cerr
		}
		return err
	}
	src.register(c)
	return c
}

func newFilesCmd(d deps) *cobra.Command {
	var domain string
	cmd := browseCmd(d, &cobra.Command{
		Use:   "files (--dir DIR | --udid UDID [--snapshot ID]) [--domain D] [PATTERN]",
		Short: "List the files of a backup (plain or encrypted)",
		Long: `List the files of a backup with their domain, path, size and modification date.
PATTERN without * ? [ is a case-insensitive substring of the path; otherwise a glob in
which * stays inside one folder and ** spans folders ("Media/DCIM/**", "*.jpg").
An encrypted backup asks for its password on the terminal (or reads one line of stdin).`,
		Args: cobra.MaximumNArgs(1),
	}, func(ctx context.Context, cmd *cobra.Command, b *browse.Backup, args []string) error {
		f := browse.Filter{Domain: domain}
		if len(args) == 1 {
			f.Pattern = args[0]
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "DOMAIN\tPATH\tSIZE\tMODIFIED")
		n := 0
		err := b.List(ctx, f, func(r backupfmt.Record) error {
			n++
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", safeText(r.Domain), displayPath(r), displaySize(r), time.Unix(r.File.LastModified, 0).Format("2006-01-02 15:04:05"))
			return nil
		})
		if ferr := tw.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "%d entries\n", n)
		return nil
	})
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain (e.g. HomeDomain, CameraRollDomain, AppDomain-<bundle id>)")
	return cmd
}

func newExtractCmd(d deps) *cobra.Command {
	var domain string
	var out exportTarget
	cmd := browseCmd(d, &cobra.Command{
		Use:   "extract (--dir DIR | --udid UDID [--snapshot ID]) [--domain D] PATTERN --to OUT",
		Short: "Copy files out of a backup (plain or encrypted) as real files",
		Long: "Copy the regular files that PATTERN selects (see `snapback files`) to OUT/<domain>/<path>,\n" +
			"decrypted when the backup is encrypted, with their modification times. Use \"**\" for\n" +
			"everything. Paths in the backup that would leave OUT are refused and reported. The\n" +
			"backup itself is only read.",
		Args: cobra.ExactArgs(1),
	}, func(ctx context.Context, cmd *cobra.Command, b *browse.Backup, args []string) error {
		st, err := b.Extract(ctx, browse.Filter{Domain: domain, Pattern: args[0]}, out.to, out.options())
		return out.report(cmd, st, err)
	})
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain")
	out.register(cmd)
	return cmd
}

func newPhotosCmd(d deps) *cobra.Command {
	var out exportTarget
	cmd := browseCmd(d, &cobra.Command{
		Use:   "photos (--dir DIR | --udid UDID [--snapshot ID]) --to OUT",
		Short: "Export the Camera Roll (photos and videos) of a backup to a folder",
		Long: `Copy the Camera Roll (CameraRollDomain Media/DCIM/**) to OUT, keeping the DCIM folders
(OUT/100APPLE/IMG_0001.HEIC) and modification times, decrypted when the backup is encrypted.`,
		Args: cobra.NoArgs,
	}, func(ctx context.Context, cmd *cobra.Command, b *browse.Backup, _ []string) error {
		st, err := b.ExportCameraRoll(ctx, out.to, out.options())
		return out.report(cmd, st, err)
	})
	out.register(cmd)
	return cmd
}

// exportTarget is where extract and photos copy files to: --to and --overwrite.
type exportTarget struct {
	to        string
	overwrite bool
}

func (e *exportTarget) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&e.to, "to", "", "output folder (created if missing; not inside the backup)")
	cmd.Flags().BoolVar(&e.overwrite, "overwrite", false, "replace files that already exist in the output folder")
	cmd.MarkFlagRequired("to")
}

func (e *exportTarget) options() browse.ExtractOptions {
	return browse.ExtractOptions{Overwrite: e.overwrite}
}

// report prints the outcome: refused rows as warnings, then a one-line summary.
func (e *exportTarget) report(cmd *cobra.Command, st browse.ExtractStats, err error) error {
	for _, r := range st.Refused {
		fmt.Fprintf(cmd.ErrOrStderr(), "refused unsafe path %s\n", r)
	}
	for _, r := range st.Existing {
		fmt.Fprintf(cmd.ErrOrStderr(), "exists, left alone (use --overwrite): %s\n", r)
	}
	files := "files"
	if st.Files == 1 {
		files = "file"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "extracted %d %s (%s) to %s\n", st.Files, files, humanBytes(st.Bytes), e.to)
	return err
}

func displayPath(r backupfmt.Record) string {
	p := safeText(r.RelativePath)
	switch r.Flags {
	case backupfmt.FlagDir:
		return p + "/"
	case backupfmt.FlagSymlink:
		return p + " -> " + safeText(r.File.Target)
	}
	return p
}

func displaySize(r backupfmt.Record) string {
	if r.Flags != backupfmt.FlagFile {
		return "-"
	}
	return strconv.FormatInt(r.File.Size, 10)
}

// safeText quotes device-supplied text that holds control or invalid characters, so a hostile
// Manifest.db cannot drive the terminal with escape sequences or break the table.
func safeText(s string) string {
	for _, c := range s {
		if c == unicode.ReplacementChar || !unicode.IsPrint(c) {
			return strconv.Quote(s)
		}
	}
	return s
}
