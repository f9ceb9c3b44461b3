package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"snapback/internal/failure"
	"snapback/settings"
)

// newConfigCmd is `snapback config`: init, path, show and check the settings file.
func newConfigCmd() *cobra.Command {
	return group("config", "Create, locate, show and check the settings file",
		"Snapback reads one YAML settings file (see `snapback config path`). Global keys apply to every\n"+
			"device; entries under `devices:` override them per UDID. SNAPBACK_<KEY> environment variables\n"+
			"override global keys (e.g. SNAPBACK_SCHEDULE_WINDOW=09:00-23:00). Edits apply without a restart.",
		newConfigInitCmd(), newConfigPathCmd(), newConfigShowCmd(), newConfigCheckCmd())
}

func newConfigInitCmd() *cobra.Command {
	var force bool
	cmd := command("init", "Write a commented example settings file with every key at its default", func(cmd *cobra.Command) error {
		path, err := settings.ConfigPath()
		if err != nil {
			return err
		}
		if err := settings.WriteExample(path, force); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), "wrote", path)
		return nil
	})
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing settings file")
	return cmd
}

func newConfigPathCmd() *cobra.Command {
	return command("path", "Print the settings file's path", func(cmd *cobra.Command) error {
		path, err := settings.ConfigPath()
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), path)
		return nil
	})
}

func newConfigShowCmd() *cobra.Command {
	var udid string
	cmd := command("show", "Print the effective settings (defaults, file and environment merged)", func(cmd *cobra.Command) error {
		path, s, err := settingsFile()
		if err != nil {
			return err
		}
		if udid != "" {
			// Show one device as a one-entry file, so the output reads like the file.
			e := s.Effective(udid)
			s = &settings.Settings{Global: s.Global, Devices: []settings.DeviceOverride{{UDID: udid, Name: e.Name, Effective: e}}}
		}
		out, err := s.YAML()
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "# effective settings from %s\n%s", path, out)
		return nil
	})
	cmd.Flags().StringVar(&udid, "udid", "", "also show the effective settings of this device")
	return cmd
}

func newConfigCheckCmd() *cobra.Command {
	return command("check", "Validate the settings file and list every problem with its key and fix", func(cmd *cobra.Command) error {
		path, s, err := settingsFile()
		if e, ok := failure.As(err); ok && e.Class == failure.Config {
			// Class config: exit 2, so scripts can tell "invalid" from "could not run".
			return e.WithFix("fix each line above, then run snapback config check again")
		} else if err != nil {
			return err
		}
		if err := alertURLProblems(s); err != nil {
			return &failure.Error{Class: failure.Config, Cause: err, Fix: "fix each line above, then run snapback config check again"}
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: OK (%d device entries)\n", path, len(s.Devices))
		return nil
	})
}
