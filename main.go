// Command snapback backs up iPhones and iPads once a day, as a tray app or a headless daemon.
//
// This file is the composition root only: it builds the command tree. Each command lives in
// a cmd_*.go file beside it and wires packages together; no business logic lives here.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func newRootCmd() *cobra.Command {
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
	)
	return root
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "snapback:", err)
		os.Exit(exitCode(err))
	}
}
