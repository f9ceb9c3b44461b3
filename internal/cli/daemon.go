package cli

import (
	"log/slog"

	"github.com/spf13/cobra"

	"snapback/internal/app"
	"snapback/settings"
)

// newDaemonCmd is `snapback daemon`: the headless scheduler for servers and NAS boxes.
func newDaemonCmd() *cobra.Command {
	var debug bool
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the backup scheduler without a tray icon (servers, NAS)",
		Long: `Runs the daily schedule headless: watches devices and the settings file, backs up each device once a
day inside its window and logs what happens. One daemon per user (a lock in the runtime folder).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx, stop := signalContext(cmd)
			defer stop()
			return app.New(app.Config{Logger: log, Secrets: settings.NewKeyring(0)}).Run(ctx)
		},
	}
	cmd.Flags().BoolVar(&debug, "debug", false, "log debug details")
	return cmd
}
