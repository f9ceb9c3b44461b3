// Package cli is the snapback command line: the cobra command tree, progress and table views,
// and the one mapping of failures to exit codes. Each command lives in its own file; the
// work itself is done by internal/app and the packages below it.
package cli

import (
	"fmt"
	"os"

	"snapback/internal/failure"

	"github.com/spf13/cobra"
)

func newRootCmd(version string) *cobra.Command {
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
			if hasGraphicalSession() {
				return runTray(cmd.Context(), startTrayBackend)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "snapback: no graphical session; running the headless daemon (snapback tray forces the tray)")
			return newDaemonCmd().RunE(cmd, args)
		},
	}
	root.AddCommand(
		newBackupCmd(),
		newRestoreCmd(),
		newDevicesCmd(),
		newSnapshotsCmd(),
		newFilesCmd(),
		newExtractCmd(),
		newPhotosCmd(),
		newPruneCmd(),
		newDaemonCmd(),
		newTrayCmd(),
		newConfigCmd(),
		newPasswordCmd(),
		newEncryptionCmd(),
		newOffsiteCmd(),
		newAutostartCmd(),
		newSimulateCmd(),
		newDemoCmd(),
		newAlertsCmd(), newHTTPCmd(),
		newPairCmd(), newUnpairCmd(), newWifiCmd(),
	)
	return root
}

// Main runs the command line with os.Args and returns the process exit status. A failure
// is printed once, with its remedy once, and mapped to its class's exit code.
func Main(version string) int {
	if err := newRootCmd(version).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "snapback:", failure.Text(err))
		return exitCode(err)
	}
	return 0
}
