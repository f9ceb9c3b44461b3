// Package cli is the snapback command line: the cobra command tree, progress and table views,
// and the one mapping of failures to exit codes. Each command lives in its own file; the
// work itself is done by internal/app and the packages below it.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"snapback/internal/failure"
	"snapback/settings"
	"snapback/tray"

	"github.com/spf13/cobra"
)

// deps are what commands take from outside the process that tests replace: built once by
// newRootCmd and passed to the command constructors that need them (never package variables).
type deps struct {
	secrets settings.Secrets // the OS keychain: backup, restic and alert passwords
}

func newRootCmd(version string) *cobra.Command {
	return newRoot(version, deps{secrets: settings.NewKeyring(0)})
}

// signalContext is the context of a command that must stop cleanly on Ctrl-C or SIGTERM: a
// backup or restore ends its session with the device, the daemon and the simulator shut
// down, extraction removes the decrypted Manifest.db instead of leaving it in the temp
// folder.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// group is a command that only holds subcommands (`snapback config`, `password`, ...); run
// bare, it shows its help.
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long}
	cmd.AddCommand(subs...)
	return cmd
}

// command builds a command that takes no arguments, as most of snapback's do: run gets the
// command for its context, streams and flags. Commands with help text or arguments build
// their cobra.Command themselves.
func command(use, short string, run func(cmd *cobra.Command) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd) }}
}

// newRoot builds the command tree on d.
func newRoot(version string, d deps) *cobra.Command {
	root := &cobra.Command{
		Use:           "snapback",
		Short:         "Automatic, incremental iPhone and iPad backups",
		Long:          "Snapback backs up every iPhone and iPad once a day over USB or Wi-Fi and keeps\nTime-Machine-like snapshots in the standard Apple backup format.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		// Bare `snapback` is what autostart runs: the tray where a desktop can show it, the
		// headless daemon on a server or NAS.
		RunE: func(cmd *cobra.Command, args []string) error {
			graphical := hasGraphicalSession()
			var note string
			var hostErr error
			if graphical {
				note, hostErr = tray.CheckHost()
			}
			if showTray, why := trayOrDaemon(graphical, hostErr); !showTray {
				fmt.Fprintf(cmd.ErrOrStderr(), "snapback: %s; running the headless daemon\n", why)
				return newDaemonCmd().RunE(cmd, args)
			}
			if note != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "snapback:", note)
			}
			return runTray(cmd.Context(), trayEngine)
		},
	}
	// A bad flag is a usage error (exit 2), whichever command it was given to.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return failure.New(failure.Usage, err) })
	root.AddCommand(
		newLocationCmd(),
		newBackupCmd(),
		newRestoreCmd(d),
		newDevicesCmd(),
		newSnapshotsCmd(),
		newFilesCmd(d),
		newExtractCmd(d),
		newPhotosCmd(d),
		newPruneCmd(),
		newDaemonCmd(),
		newTrayCmd(),
		newConfigCmd(),
		newPasswordCmd(d),
		newEncryptionCmd(d),
		newOffsiteCmd(d),
		newAutostartCmd(),
		newSimulateCmd(),
		newDemoCmd(),
		newAlertsCmd(d), newHTTPCmd(),
		newPairCmd(), newUnpairCmd(), newWifiCmd(),
	)
	return root
}

// Main runs the command line with os.Args and returns the process exit status. A failure
// is printed once, with its remedy once, and mapped to its class's exit code.
func Main(version string) int {
	return execute(newRootCmd(version), os.Stderr)
}

// trayOrDaemon decides what bare `snapback` runs: the tray where a desktop can show it,
// otherwise the daemon, and why. A display without a D-Bus session bus (ssh -X, a bare X
// server) cannot show a Linux tray: systray would crash on it.
func trayOrDaemon(graphical bool, hostErr error) (showTray bool, why string) {
	switch {
	case !graphical:
		return false, "no graphical session (snapback tray forces the tray)"
	case hostErr != nil:
		return false, "a display but no desktop session to show the tray in (" + hostErr.Error() + ")"
	}
	return true, "a desktop session"
}

// execute runs root and turns its error into the one printed line and the exit status.
func execute(root *cobra.Command, stderr io.Writer) int {
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "snapback:", failure.Text(err))
		return exitCode(err)
	}
	return 0
}
